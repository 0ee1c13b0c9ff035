//! Captures (`hairpin capture`): a port's frames, received and/or sent, from both paths
//! that carry them, to each client as a pcapng stream.
//!
//! The frame path only copies: the workers into their tap rings
//! ([`crate::datapath::tap`]), the XDP program's fast path into its ring buffer
//! (`ebpf/src/tap.rs`), each for the ports and directions tapped now, which cost a byte
//! read per frame otherwise. One thread (`hairpin-capture`, off the workers' cores)
//! does everything else: every millisecond while a capture runs it drains both rings,
//! gives each frame to the captures of its port and direction, runs each capture's
//! filter (tcpdump's language, compiled and run by libpcap), encodes the frames that
//! pass into the capture's stream ([`stream`]), and writes what each client's socket
//! takes. It never blocks on a client: a capture holds at most
//! [`stream::MAX_PENDING`] bytes for its client, and a frame past that is counted lost.
//! Frames the rings had no room for are counted too; both counts close the stream.
//!
//! A capture begins when the control socket's thread hands over the client's connection
//! ([`Captures::handover`]): the capture thread taps the port, then answers `capturing`
//! (so a client that has read it misses no frame sent after), and ends at its count, its
//! seconds, when the client shuts down its side (Ctrl-C in `hairpin capture`), when
//! its port is removed, or when hairpin stops: then its statistics block is written and
//! the connection closed. Several captures of one port or of several run at once, each
//! with its own filter, up to [`MAX_CAPTURES`].
//!
//! Port mirrors (SPAN, [`mirror`]) ride on the same taps: the bridge gives the thread
//! the mirrors to carry out ([`Captures::set_mirrors`]), and each tapped frame of a
//! mirrored port in a mirror's directions is sent as it is out of the monitor port.
mod mirror;
pub mod stream;
mod xdp;

use std::{
    borrow::Cow,
    io::{self, Read as _, Write as _},
    os::{fd::AsRawFd as _, unix::net::UnixStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime},
};

use pcap::{BpfProgram, Capture as Pcap, Linktype};

use self::{
    mirror::{LiveMirror, SharedCounts},
    stream::{Counts, Stream},
};
pub use self::{
    mirror::{MirrorCounts, MirrorSink},
    xdp::XdpTaps,
};
use super::{
    clients::Handover,
    protocol::{
        self, CaptureRequest, Direction, MAX_SNAPLEN, Response, ResponseLine, capture_stream,
    },
};
use crate::{
    datapath::tap::{self, Tapped, Taps},
    switch::{DropReason, PortId},
    sys::{self, EventFd},
};

/// Captures running at once, at most (each may hold [`stream::MAX_PENDING`] bytes).
pub const MAX_CAPTURES: usize = 16;

/// How often the rings are drained while a capture runs.
const DRAIN: Duration = Duration::from_millis(1);

/// How long an ending capture may take to write its last bytes.
const LAST_WRITE: Duration = Duration::from_secs(2);

/// A capture asked for and checked, waiting for its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The port.
    pub port: PortId,
    /// Its name, for the stream.
    pub name: String,
    /// [`tap::IN`] and/or [`tap::OUT`].
    pub dirs: u8,
    /// The filter expression.
    pub filter: Option<String>,
    /// Frames (that pass the filter) after which it ends.
    pub count: Option<u64>,
    /// How long it runs at most.
    pub seconds: Option<u64>,
    /// Bytes kept of each frame.
    pub snaplen: u32,
}

impl Plan {
    /// Checks `request` for port `port` named `name`; the error says what is wrong.
    pub fn new(port: PortId, name: &str, request: &CaptureRequest) -> Result<Self, String> {
        let snaplen = request.snaplen.unwrap_or(MAX_SNAPLEN);
        if !(1..=MAX_SNAPLEN).contains(&snaplen) {
            return Err(format!("snaplen {snaplen}: give 1 to {MAX_SNAPLEN} bytes"));
        }
        if request.count == Some(0) || request.seconds == Some(0) {
            return Err("a count or seconds of 0 would capture nothing: give at least 1".into());
        }
        let filter = request
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty());
        if let Some(filter) = filter {
            compile(filter)?;
        }
        Ok(Self {
            port,
            name: name.to_owned(),
            dirs: match request.direction {
                Direction::In => tap::IN,
                Direction::Out => tap::OUT,
                Direction::Both => tap::IN | tap::OUT,
            },
            filter: filter.map(str::to_owned),
            count: request.count,
            seconds: request.seconds,
            snaplen,
        })
    }
}

impl Plan {
    /// Its directions as the protocol says them.
    pub fn direction(&self) -> Direction {
        match self.dirs {
            tap::IN => Direction::In,
            tap::OUT => Direction::Out,
            _ => Direction::Both,
        }
    }
}

/// Compiles a tcpdump filter expression for Ethernet frames, with libpcap.
fn compile(filter: &str) -> Result<BpfProgram, String> {
    let dead = Pcap::dead(Linktype::ETHERNET).map_err(|e| format!("libpcap: {e}"))?;
    dead.compile(filter, true)
        .map_err(|e| format!("filter {filter:?}: {e}"))
}

/// A call to the capture thread.
enum Call {
    /// Begin this capture on this connection.
    Start(Box<Plan>, UnixStream),
    /// The port left: its captures end.
    PortGone(PortId),
    /// Carry out exactly these mirrors.
    Mirrors(Vec<MirrorSink>),
    /// hairpin stops: every capture ends.
    Stop,
}

/// The capture thread; every capture ends when dropped.
#[derive(Debug)]
pub struct Captures {
    calls: mpsc::Sender<Call>,
    wake: Arc<EventFd>,
    running: Arc<AtomicUsize>,
    /// The mirrors last set, by name, in order.
    mirrors_listed: std::sync::Mutex<Vec<String>>,
    /// Their counts as the capture thread last published them.
    mirror_counts: SharedCounts,
    thread: Option<JoinHandle<()>>,
}

impl Captures {
    /// Starts the capture thread over the workers' `taps` and the XDP program's (none
    /// where there is no program, as in the unit tests), off the workers' `cores`.
    pub fn start(taps: Arc<Taps>, xdp: Option<XdpTaps>, cores: &[usize]) -> io::Result<Self> {
        let wake = Arc::new(EventFd::new()?);
        let running = Arc::new(AtomicUsize::new(0));
        let (calls, inbox) = mpsc::channel();
        let cores = cores.to_vec();
        let mirror_counts = SharedCounts::default();
        let hub = Hub {
            taps,
            xdp,
            inbox,
            wake: Arc::clone(&wake),
            running: Arc::clone(&running),
            captures: Vec::new(),
            mirrors: Vec::new(),
            mirror_counts: Arc::clone(&mirror_counts),
            tapped: Vec::new(),
        };
        let thread = thread::Builder::new()
            .name("hairpin-capture".into())
            .spawn(move || {
                if !cores.is_empty() {
                    crate::sys::keep_off(&cores);
                }
                hub.run();
            })?;
        Ok(Self {
            calls,
            wake,
            running,
            mirrors_listed: std::sync::Mutex::default(),
            mirror_counts,
            thread: Some(thread),
        })
    }

    /// Captures running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// What begins `plan` on the client's connection once it is answered.
    pub fn handover(&self, plan: Plan) -> Handover {
        let (calls, wake) = (self.calls.clone(), Arc::clone(&self.wake));
        Handover::new(move |stream| {
            if calls.send(Call::Start(Box::new(plan), stream)).is_ok() {
                wake.notify();
            }
        })
    }

    /// Carries out exactly `mirrors` from now on (every mirror not among them stops at
    /// once, its counts forgotten).
    pub fn set_mirrors(&self, mirrors: Vec<MirrorSink>) {
        // Listed at once; carried out (and counted) by the capture thread as soon as
        // it wakes.
        *self
            .mirrors_listed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            mirrors.iter().map(|m| m.name.clone()).collect();
        if self.calls.send(Call::Mirrors(mirrors)).is_ok() {
            self.wake.notify();
        }
    }

    /// Each mirror's counts, by name, for the mirrors last set (a count the capture
    /// thread has not published yet is 0).
    pub fn mirror_counts(&self) -> Vec<(String, MirrorCounts)> {
        let published = self
            .mirror_counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.mirrors_listed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|name| {
                let counts = published.iter().find(|(n, _)| n == name).map(|(_, c)| *c);
                (name.clone(), counts.unwrap_or_default())
            })
            .collect()
    }

    /// Port `port` left: its captures end.
    pub fn port_gone(&self, port: PortId) {
        if self.calls.send(Call::PortGone(port)).is_ok() {
            self.wake.notify();
        }
    }
}

impl Drop for Captures {
    fn drop(&mut self) {
        let _ = self.calls.send(Call::Stop);
        self.wake.notify();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the capture thread panicked");
        }
    }
}

/// One running capture.
struct Live {
    plan: Plan,
    filter: Option<BpfProgram>,
    conn: UnixStream,
    stream: Stream,
    counts: Counts,
    /// The port's ring losses when it began.
    lost_at_start: u64,
    /// Unix time when it began, nanoseconds.
    start_ns: u64,
    /// When its seconds are up.
    until: Option<Instant>,
    /// Ending: its statistics are written, its last bytes due by then.
    ending: Option<Instant>,
}

/// The capture thread's state.
struct Hub {
    taps: Arc<Taps>,
    xdp: Option<XdpTaps>,
    inbox: mpsc::Receiver<Call>,
    wake: Arc<EventFd>,
    running: Arc<AtomicUsize>,
    captures: Vec<Live>,
    mirrors: Vec<LiveMirror>,
    mirror_counts: SharedCounts,
    /// Ports tapped now, with their directions.
    tapped: Vec<(PortId, u8)>,
}

impl Hub {
    fn run(mut self) {
        loop {
            let mut fds = vec![sys::pollfd(self.wake.raw(), libc::POLLIN)];
            for c in &self.captures {
                let mut events = 0;
                if c.ending.is_none() {
                    events |= libc::POLLIN;
                }
                if !c.stream.pending().is_empty() {
                    events |= libc::POLLOUT;
                }
                fds.push(sys::pollfd(c.conn.as_raw_fd(), events));
            }
            let timeout =
                if !self.mirrors.is_empty() || self.captures.iter().any(|c| c.ending.is_none()) {
                    DRAIN.as_millis() as i32
                } else if self.captures.is_empty() {
                    -1
                } else {
                    50
                };
            sys::poll(&mut fds, timeout);
            self.wake.drain();
            let events: Vec<libc::c_short> = fds[1..].iter().map(|f| f.revents).collect();
            let now = Instant::now();
            let clock = Clock::now();
            if self.take_calls(&clock) {
                self.finish(&clock);
                return;
            }
            self.drain(&clock);
            self.serve(&events, now, &clock);
            self.retap();
            if !self.mirrors.is_empty() {
                self.publish_mirrors();
            }
            self.running.store(
                self.captures.iter().filter(|c| c.ending.is_none()).count(),
                Ordering::Relaxed,
            );
        }
    }

    /// Takes the calls waiting; true on [`Call::Stop`].
    fn take_calls(&mut self, clock: &Clock) -> bool {
        while let Ok(call) = self.inbox.try_recv() {
            match call {
                Call::Start(plan, conn) => self.begin(*plan, conn, clock),
                Call::PortGone(port) => {
                    // What was tapped before the call is the captures' own.
                    self.drain(clock);
                    for i in 0..self.captures.len() {
                        if self.captures[i].plan.port == port {
                            self.end(i, clock);
                        }
                    }
                }
                Call::Mirrors(sinks) => {
                    // What was tapped for a mirror going away is not sent any more.
                    self.drain(clock);
                    self.set_mirrors(sinks);
                }
                Call::Stop => {
                    self.drain(clock);
                    return true;
                }
            }
        }
        false
    }

    /// Begins `plan` on `conn`.
    fn begin(&mut self, plan: Plan, conn: UnixStream, clock: &Clock) {
        // Checked by `Plan::new` already.
        let filter = match plan.filter.as_deref().map(compile).transpose() {
            Ok(filter) => filter,
            Err(e) => {
                tracing::warn!("capture on {}: {e}", plan.name);
                return;
            }
        };
        if conn.set_nonblocking(true).is_err() {
            return;
        }
        self.taps.arm();
        // Answered once the port is tapped (below, before the thread's next turn): a
        // client that reads `capturing` misses no frame sent after.
        let answer = ResponseLine {
            version: protocol::VERSION,
            response: Response::Capturing {
                port: plan.name.clone(),
                direction: plan.direction(),
            },
        };
        let mut preface = serde_json::to_vec(&answer).unwrap_or_default();
        preface.push(b'\n');
        tracing::info!(
            "capture on {} begins (filter {:?})",
            plan.name,
            plan.filter.as_deref().unwrap_or("none")
        );
        self.captures.push(Live {
            lost_at_start: self.lost(plan.port),
            stream: Stream::new(&preface, &plan.name, plan.snaplen),
            until: plan
                .seconds
                .map(|s| Instant::now() + Duration::from_secs(s)),
            plan,
            filter,
            conn,
            counts: Counts::default(),
            start_ns: clock.unix_now(),
            ending: None,
        });
        self.retap();
    }

    /// Copies of `port`'s frames lost in the rings so far.
    fn lost(&self, port: PortId) -> u64 {
        ring_losses(&self.taps, self.xdp.as_ref(), port)
    }

    /// Copies of the frames of `ports` lost in the rings so far.
    fn lost_of(&self, ports: &[PortId]) -> u64 {
        ports.iter().map(|&p| self.lost(p)).sum()
    }

    /// Carries out exactly `sinks` from now on: a mirror unchanged goes on (its counts
    /// too), one gone stops, one new or changed begins.
    fn set_mirrors(&mut self, sinks: Vec<MirrorSink>) {
        let mut kept = std::mem::take(&mut self.mirrors);
        for sink in sinks {
            if let Some(i) = kept.iter().position(|m| m.sink == sink) {
                self.mirrors.push(kept.swap_remove(i));
                continue;
            }
            let lost_now = self.lost_of(&sink.from);
            let name = sink.name.clone();
            match LiveMirror::open(sink, lost_now) {
                Ok(m) => {
                    tracing::info!("mirror {name} begins");
                    self.taps.arm();
                    self.mirrors.push(m);
                }
                Err(e) => tracing::warn!("mirror {name}: opening its monitor port: {e}"),
            }
        }
        for gone in kept {
            tracing::info!("mirror {} stops", gone.sink.name);
        }
        self.retap();
        self.publish_mirrors();
    }

    /// Publishes each mirror's counts.
    fn publish_mirrors(&self) {
        let counts = self
            .mirrors
            .iter()
            .map(|m| (m.sink.name.clone(), m.counts(self.lost_of(&m.sink.from))))
            .collect();
        mirror::publish(&self.mirror_counts, counts);
    }

    /// Gives every tapped frame to its captures.
    fn drain(&mut self, clock: &Clock) {
        let (captures, mirrors) = (&mut self.captures, &mut self.mirrors);
        self.taps.drain(|t: &Tapped| {
            let frame = Frame {
                port: t.port,
                dir: t.dir,
                reason: t.reason,
                fast: t.fast,
                ts_ns: clock.unix(t.ts_ns),
                data: &t.data,
                len: t.data.len() as u32,
            };
            deliver(captures, mirrors, &frame);
        });
        if let Some(xdp) = &mut self.xdp {
            xdp.drain(|meta, data| {
                let frame = Frame {
                    port: meta.slot,
                    dir: meta.dir,
                    reason: xdp::reason(meta.reason),
                    fast: true,
                    ts_ns: clock.unix(meta.ts_ns),
                    data,
                    len: meta.len,
                };
                deliver(captures, mirrors, &frame);
            });
        }
        for i in 0..self.captures.len() {
            let c = &self.captures[i];
            if c.ending.is_none() && c.plan.count.is_some_and(|n| c.counts.accepted >= n) {
                self.end(i, clock);
            }
        }
    }

    /// Reads and writes each client's connection; ends and closes captures as due.
    fn serve(&mut self, events: &[libc::c_short], now: Instant, clock: &Clock) {
        let mut gone = vec![false; self.captures.len()];
        for (i, &revents) in events.iter().enumerate().take(self.captures.len()) {
            if revents & libc::POLLIN != 0 && self.captures[i].ending.is_none() {
                let mut scratch = [0u8; 256];
                match (&self.captures[i].conn).read(&mut scratch) {
                    // The client shut its side: end here, the statistics still go.
                    Ok(0) => self.end(i, clock),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => gone[i] = true,
                }
            }
            if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                gone[i] = true;
            }
        }
        for (i, c) in self.captures.iter_mut().enumerate() {
            if gone[i] {
                continue;
            }
            if c.ending.is_none() && c.until.is_some_and(|t| now >= t) {
                c.end(
                    ring_losses(&self.taps, self.xdp.as_ref(), c.plan.port),
                    clock,
                );
            }
            gone[i] = !c.write_out()
                || c.ending
                    .is_some_and(|by| c.stream.pending().is_empty() || now >= by);
        }
        let mut i = 0;
        self.captures.retain(|c| {
            let keep = !gone[i];
            i += 1;
            if !keep {
                tracing::info!(
                    "capture on {} ended: {} frame(s) written, {} lost",
                    c.plan.name,
                    c.counts.delivered,
                    c.counts.lost_rings + c.counts.lost_slow
                );
            }
            keep
        });
    }

    /// Ends capture `i`: its statistics block is written after its frames.
    fn end(&mut self, i: usize, clock: &Clock) {
        let lost = self.lost(self.captures[i].plan.port);
        self.captures[i].end(lost, clock);
    }

    /// Sets the taps the running captures need, and clears the others.
    fn retap(&mut self) {
        let mut want: Vec<(PortId, u8)> = Vec::new();
        let needs = self
            .captures
            .iter()
            .filter(|c| c.ending.is_none())
            .map(|c| (c.plan.port, c.plan.dirs))
            .chain(
                self.mirrors
                    .iter()
                    .flat_map(|m| m.sink.from.iter().map(|&p| (p, m.sink.dirs))),
            );
        for (port, need) in needs {
            match want.iter_mut().find(|(p, _)| *p == port) {
                Some((_, dirs)) => *dirs |= need,
                None => want.push((port, need)),
            }
        }
        let cleared = self
            .tapped
            .iter()
            .filter(|(p, _)| !want.iter().any(|(q, _)| q == p))
            .map(|&(p, _)| (p, 0));
        let changes: Vec<(PortId, u8)> = cleared
            .chain(want.iter().copied().filter(|w| !self.tapped.contains(w)))
            .collect();
        for (port, dirs) in changes {
            self.taps.set(port, dirs);
            if let Some(xdp) = &mut self.xdp
                && let Err(e) = xdp.set(u32::from(port), dirs)
            {
                tracing::warn!("capture: tapping the fast path of port {port}: {e}");
            }
        }
        self.tapped = want;
    }

    /// hairpin stops: every capture ends, and gets a moment to write its last bytes.
    fn finish(&mut self, clock: &Clock) {
        for i in 0..self.captures.len() {
            self.end(i, clock);
        }
        self.retap();
        let by = Instant::now() + Duration::from_secs(1);
        while Instant::now() < by
            && self
                .captures
                .iter_mut()
                .any(|c| c.write_out() && !c.stream.pending().is_empty())
        {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Copies of `port`'s frames lost in the rings so far.
fn ring_losses(taps: &Taps, xdp: Option<&XdpTaps>, port: PortId) -> u64 {
    taps.lost(port) + xdp.map_or(0, |x| x.lost(u32::from(port)))
}

impl Live {
    /// Ends the capture, the port's ring losses being `lost` now.
    fn end(&mut self, lost: u64, clock: &Clock) {
        if self.ending.is_some() {
            return;
        }
        self.counts.lost_rings = lost.saturating_sub(self.lost_at_start);
        self.stream
            .statistics(self.start_ns, clock.unix_now(), &self.counts);
        self.ending = Some(Instant::now() + LAST_WRITE);
    }

    /// Writes what the client's socket takes; false when the client is gone.
    fn write_out(&mut self) -> bool {
        while !self.stream.pending().is_empty() {
            match (&self.conn).write(self.stream.pending()) {
                Ok(0) => return false,
                Ok(n) => self.stream.taken(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// A tapped frame, from either ring.
struct Frame<'a> {
    port: PortId,
    dir: u8,
    reason: Option<DropReason>,
    fast: bool,
    /// Unix time, nanoseconds.
    ts_ns: u64,
    data: &'a [u8],
    /// Its whole length (`data` may be less).
    len: u32,
}

/// Gives `frame` to each running capture and mirror of its port and direction.
fn deliver(captures: &mut [Live], mirrors: &mut [LiveMirror], frame: &Frame<'_>) {
    for m in mirrors.iter_mut() {
        // A copy of less than the whole frame would be a different frame.
        if m.takes(frame.port, frame.dir) && frame.data.len() == frame.len as usize {
            m.send(frame.data);
        }
    }
    for c in captures.iter_mut() {
        if c.plan.port != frame.port || c.plan.dirs & frame.dir == 0 || c.ending.is_some() {
            continue;
        }
        if c.plan.count.is_some_and(|n| c.counts.accepted >= n) {
            continue;
        }
        c.counts.seen += 1;
        if let Some(filter) = &c.filter
            && !filter.filter(frame.data)
        {
            continue;
        }
        c.counts.accepted += 1;
        let comment = match (frame.reason, frame.fast) {
            (Some(reason), _) => Some(Cow::Owned(format!(
                "{}{}",
                capture_stream::DROPPED,
                reason.name()
            ))),
            (None, true) => Some(Cow::Borrowed(capture_stream::FAST_PATH)),
            (None, false) => None,
        };
        let flags = if frame.dir == tap::IN {
            capture_stream::INBOUND
        } else {
            capture_stream::OUTBOUND
        };
        if c.stream
            .packet(frame.ts_ns, frame.data, frame.len, flags, comment)
        {
            c.counts.delivered += 1;
        } else {
            c.counts.lost_slow += 1;
        }
    }
}

/// `CLOCK_MONOTONIC` (the taps' clock) against Unix time, read once per turn.
struct Clock {
    /// Unix time minus monotonic time, nanoseconds.
    offset: i128,
}

impl Clock {
    fn now() -> Self {
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        Self {
            offset: unix - i128::from(sys::monotonic_ns()),
        }
    }

    /// Monotonic `ns` as Unix time.
    fn unix(&self, ns: u64) -> u64 {
        (i128::from(ns) + self.offset).max(0) as u64
    }

    /// Unix time now.
    fn unix_now(&self) -> u64 {
        self.unix(sys::monotonic_ns())
    }
}

#[cfg(test)]
mod tests;
