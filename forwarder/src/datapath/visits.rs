//! Which of a worker's ports a turn looks at.
//!
//! Looking at a port costs a few cache lines the kernel writes (its ring indices), so a
//! worker with hundreds of ports would spend its turns on ports that have nothing.
//! Instead a port is *awake* while it has work — frames received or to send, frames on
//! its TX ring — and for [`QUIET_TURNS`] turns after; each turn visits the awake ports
//! and [`SWEEP`] of the others in rotation, so a quiet port's first frame is seen within
//! `ports / SWEEP` turns (or at once when the worker sleeps: `poll` names the socket).
//! A frame queued for a port wakes it, so its send and completions are never late. A
//! worker with no more than [`SWEEP`] ports visits them all, every turn.

/// Quiet ports looked at per turn, besides the awake ones.
pub const SWEEP: usize = 8;

/// Turns a port stays awake after its last work.
pub const QUIET_TURNS: u32 = 1024;

/// One worker's schedule of visits, by index into its ports.
#[derive(Debug, Default)]
pub struct Visits {
    /// The awake ports, in the order they woke.
    awake: Vec<usize>,
    /// By port: whether it is in `awake`, and its quiet turns since its last work.
    state: Vec<(bool, u32)>,
    /// Where the sweep goes on.
    cursor: usize,
    /// This turn's visits: the awake ports, then the swept ones.
    turn: Vec<usize>,
}

impl Visits {
    /// A schedule for `ports` ports, all awake (after ports came or went: their
    /// indices changed, and each may have work).
    pub fn reset(&mut self, ports: usize) {
        self.awake.clear();
        self.awake.extend(0..ports);
        self.state.clear();
        self.state.resize(ports, (true, 0));
        self.cursor = 0;
    }

    /// Plans this turn's visits.
    #[inline]
    pub fn plan(&mut self) {
        self.turn.clear();
        self.turn.extend_from_slice(&self.awake);
        let ports = self.state.len();
        if self.awake.len() == ports {
            return;
        }
        for k in 0..SWEEP.min(ports) {
            let i = (self.cursor + k) % ports;
            if !self.state[i].0 {
                self.turn.push(i);
            }
        }
        self.cursor = (self.cursor + SWEEP) % ports;
    }

    /// This turn's visits (to read or refill), by index.
    #[inline]
    pub fn turn(&self) -> &[usize] {
        &self.turn
    }

    /// The awake ports (to send on and reap), by index.
    #[inline]
    pub fn awake(&self) -> &[usize] {
        &self.awake
    }

    /// Port `i` has work: it is visited every turn until it has been quiet a while.
    #[inline]
    pub fn wake(&mut self, i: usize) {
        let state = &mut self.state[i];
        state.1 = 0;
        if !state.0 {
            state.0 = true;
            self.awake.push(i);
        }
    }

    /// Ends the turn: `busy(i)` says whether awake port `i` had work; ports quiet for
    /// [`QUIET_TURNS`] fall asleep. Nothing to do while every port stays awake (a
    /// worker with few ports).
    #[inline]
    pub fn settle(&mut self, mut busy: impl FnMut(usize) -> bool) {
        if self.state.len() <= SWEEP {
            return;
        }
        let state = &mut self.state;
        self.awake.retain(|&i| {
            let s = &mut state[i];
            s.1 = if busy(i) { 0 } else { s.1 + 1 };
            s.0 = s.1 < QUIET_TURNS;
            s.0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns_until_seen(v: &mut Visits, port: usize) -> usize {
        (1..)
            .find(|_| {
                v.plan();
                let seen = v.turn().contains(&port);
                v.settle(|_| false);
                seen
            })
            .unwrap()
    }

    #[test]
    fn few_ports_are_all_visited_every_turn() {
        let mut v = Visits::default();
        v.reset(SWEEP);
        for _ in 0..2 * QUIET_TURNS {
            v.plan();
            assert_eq!(v.turn(), (0..SWEEP).collect::<Vec<_>>());
            v.settle(|_| false);
        }
    }

    #[test]
    fn quiet_ports_fall_asleep_and_are_swept_in_rotation() {
        let mut v = Visits::default();
        v.reset(1000);
        for _ in 0..QUIET_TURNS {
            v.plan();
            v.settle(|i| i == 7);
        }
        assert_eq!(v.awake(), [7], "only the busy port stays awake");
        // Every quiet port is seen within ports / SWEEP turns, and a turn costs the
        // awake port and SWEEP others.
        let mut seen = vec![0; 1000];
        for _ in 0..1000 / SWEEP {
            v.plan();
            assert!(v.turn().len() <= 1 + SWEEP);
            for &i in v.turn() {
                seen[i] += 1;
            }
            v.settle(|i| i == 7);
        }
        assert!(seen.iter().all(|&n| n >= 1), "a port never visited");
        assert_eq!(seen[7], 1000 / SWEEP);
    }

    #[test]
    fn a_woken_port_is_visited_until_quiet_again() {
        let mut v = Visits::default();
        v.reset(100);
        for _ in 0..QUIET_TURNS {
            v.plan();
            v.settle(|_| false);
        }
        assert!(v.awake().is_empty());
        assert!(turns_until_seen(&mut v, 42) <= 100 / SWEEP + 1);
        v.wake(42);
        v.wake(42);
        assert_eq!(v.awake(), [42], "woken once");
        for _ in 0..QUIET_TURNS - 1 {
            v.plan();
            assert_eq!(v.turn()[0], 42);
            v.settle(|_| false);
        }
        v.plan();
        v.settle(|_| false);
        assert!(v.awake().is_empty(), "asleep after its quiet turns");
    }
}
