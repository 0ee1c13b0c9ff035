//! `hairpin top`: the bridge's rates, live, over the control socket.
//!
//! Two `show stats` answers taken an interval apart subtract into rates: per port,
//! packets and bits per second each way and drops per second by reason; per worker,
//! the share of the interval it was busy and what a frame cost it; the latency
//! percentiles of the interval's busy turns alone (the histogram's buckets subtracted,
//! [`Summary::since`]); the MAC table. [`frame`] (`top/rates.rs`) does the arithmetic and the
//! layout and nothing else, so tests call it with samples built by hand; [`run`] (here)
//! fetches the samples and hands the frames to the terminal (`top/draw.rs`), redrawn in
//! place.
//!
//! Counters that start over between two samples are taken as counting from zero, so a
//! rate is never negative nor absurd: a port that was just added, a port removed and
//! added again (its counters restart at attach), a whole hairpin restarted.
use std::{
    io::{self, IsTerminal, Write},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

use hairpin::control::{
    protocol::{Request, Response, Stats},
    service,
};

mod draw;
mod rates;

use draw::{Screen, Signals};
pub(crate) use rates::frame;
use rates::same_run;

/// Shows the rates of the hairpin serving `socket`: takes a sample, waits `interval`,
/// takes another and prints the frame between them.
///
/// With `once`, that one frame is all. Otherwise it goes on until Ctrl-C (or SIGTERM),
/// a frame each `interval`: redrawn in place on a terminal, with the cursor hidden
/// until the end; one after another, a blank line between, when stdout is not a
/// terminal. A server that refuses or stops answering ends it with an error.
pub fn run(socket: &Path, interval: Duration, once: bool) -> Result<()> {
    ensure!(!interval.is_zero(), "the interval must be longer than zero");
    if once {
        return one_frame(socket, interval, &mut io::stdout().lock());
    }
    live(socket, interval)
}

/// Two samples `interval` apart and the frame between them, written to `out`.
fn one_frame(socket: &Path, interval: Duration, out: &mut impl Write) -> Result<()> {
    let earlier = sample(socket, false)?;
    thread::sleep(interval);
    let now = sample(socket, true)?;
    let frame = frame(&earlier.stats, &now.stats, elapsed(&earlier, &now));
    out.write_all(frame.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// Frames until stopped by a signal or a reader that went away.
fn live(socket: &Path, interval: Duration) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let _signals = Signals::register(&stop)?;
    watch(socket, interval, &stop, None)
}

/// The live view for a caller that handles signals itself (the demo): frames until
/// `stop` is raised, `until` has passed (after one frame at least) or the reader went
/// away.
pub fn watch(
    socket: &Path,
    interval: Duration,
    stop: &AtomicBool,
    until: Option<Instant>,
) -> Result<()> {
    ensure!(!interval.is_zero(), "the interval must be longer than zero");
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    let mut screen = Screen::new(stdout.lock(), terminal);
    let mut earlier = sample(socket, false)?;
    while wait(stop, interval) {
        let now = sample(socket, true)?;
        match screen.draw(&frame(&earlier.stats, &now.stats, elapsed(&earlier, &now))) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            drawn => drawn.context("writing to stdout")?,
        }
        earlier = now;
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
    }
    Ok(())
}

/// Sleeps `interval` in small steps; false when `stop` was raised meanwhile.
fn wait(stop: &AtomicBool, interval: Duration) -> bool {
    const STEP: Duration = Duration::from_millis(50);
    let until = Instant::now() + interval;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        thread::sleep(left.min(STEP));
    }
}

/// A `show stats` answer and when it came.
#[derive(Debug)]
struct Sample {
    stats: Stats,
    at: Instant,
}

/// Asks `socket` for every counter; `answered_before` says whether it did already (so
/// that failing now means it went away).
fn sample(socket: &Path, answered_before: bool) -> Result<Sample> {
    let answer = service::request(socket, &Request::ShowStats).with_context(|| {
        let gone = if answered_before {
            ", which answered before: has hairpin stopped?"
        } else {
            ""
        };
        format!("reading stats from {}{gone}", socket.display())
    })?;
    match answer {
        Response::Stats(stats) => Ok(Sample {
            stats: *stats,
            at: Instant::now(),
        }),
        Response::Error { message } => bail!("{}: {message}", socket.display()),
        other => bail!("{}: answered show stats with {other:?}", socket.display()),
    }
}

/// The time between two samples: by the server's clock when both come from the same
/// run (its uptime is read with the counters), else as seen here.
fn elapsed(earlier: &Sample, now: &Sample) -> Duration {
    let by_server = now.stats.uptime_s - earlier.stats.uptime_s;
    Duration::try_from_secs_f64(by_server)
        .ok()
        .filter(|d| same_run(&earlier.stats, &now.stats) && !d.is_zero())
        .unwrap_or_else(|| now.at.saturating_duration_since(earlier.at))
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader},
        os::unix::net::UnixListener,
        path::PathBuf,
        sync::atomic::AtomicU32,
    };

    use super::rates::tests::{SECOND, busy_idle_absent, row};
    use super::*;
    use hairpin::control::protocol::{ResponseLine, VERSION};

    #[test]
    fn waiting_ends_early_when_stopped() {
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        assert!(!wait(&stop, 10 * SECOND));
        assert!(t.elapsed() < SECOND);
        stop.store(false, Ordering::Relaxed);
        assert!(wait(&stop, Duration::from_millis(60)));
        assert!(t.elapsed() >= Duration::from_millis(60));
    }

    /// A control socket that gives `answers`, one per connection, then goes away.
    fn server(answers: Vec<Response>) -> (PathBuf, thread::JoinHandle<()>) {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "hairpin-top-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let remove = path.clone();
        let thread = thread::spawn(move || {
            for response in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut request = String::new();
                BufReader::new(&stream).read_line(&mut request).unwrap();
                assert!(request.contains("show_stats"), "{request}");
                let line = serde_json::to_string(&ResponseLine {
                    version: VERSION,
                    response,
                })
                .unwrap();
                (&stream).write_all(format!("{line}\n").as_bytes()).unwrap();
            }
            let _ = std::fs::remove_file(remove);
        });
        (path, thread)
    }

    #[test]
    fn once_takes_two_samples_and_returns() {
        let (earlier, now) = busy_idle_absent();
        let (path, server) = server(vec![
            Response::Stats(Box::new(earlier)),
            Response::Stats(Box::new(now)),
        ]);
        let mut out = Vec::new();
        one_frame(&path, Duration::from_millis(10), &mut out).unwrap();
        server.join().unwrap();
        let f = String::from_utf8(out).unwrap();
        // Over the server's 5 s between the two answers, not the 10 ms waited here.
        assert!(
            f.starts_with("hairpin 0.1.0, up 01:02:05, rates over 5.00 s\n"),
            "{f}"
        );
        assert_eq!(row(&f, "vf1")[2..4], ["1.00", "Mpps"], "{f}");
        assert_eq!(row(&f, "vf2")[2..4], ["0", "pps"], "{f}");
    }

    #[test]
    fn a_refusal_or_a_missing_server_is_an_error_naming_the_socket() {
        let (path, server) = server(vec![Response::Error {
            message: "not now".to_owned(),
        }]);
        let e = run(&path, SECOND, true).unwrap_err();
        assert_eq!(e.to_string(), format!("{}: not now", path.display()));
        server.join().unwrap();
        // The server has gone, and its socket with it.
        let e = format!("{:#}", run(&path, SECOND, true).unwrap_err());
        assert!(
            e.starts_with(&format!("reading stats from {}", path.display())),
            "{e}"
        );
        assert!(run(&path, Duration::ZERO, true).is_err());
    }

    #[test]
    fn a_server_that_goes_away_is_an_error_saying_so() {
        let (path, server) = server(vec![Response::Stats(Box::default())]);
        let e = one_frame(&path, Duration::from_millis(10), &mut Vec::new()).unwrap_err();
        server.join().unwrap();
        let e = format!("{e:#}");
        let expected = format!(
            "reading stats from {}, which answered before",
            path.display()
        );
        assert!(e.starts_with(&expected), "{e}");
    }
}
