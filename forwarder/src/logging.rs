//! hairpin's log lines to stderr, through a writer that never stops hairpin.
//!
//! Every thread logs through `tracing`; the subscriber formats each event into a line
//! and hands it to a [`LogWriter`], which writes it to stderr. A line whose write fails
//! (a closed stderr: `hairpin run ... 2>&1 | head -1`, or journald restarted under
//! systemd) is dropped and counted, and the thread that logged it goes on. When a
//! write succeeds again, a warning before that line says how many were dropped and
//! the last error; the count since start is in `show stats` and the metrics
//! ([`lines_dropped`]). Nothing on this path panics: the standard library's `eprintln!`,
//! which panics on a closed stderr, is not used, and the subscriber's own report of a
//! failed write (an `eprintln!`) is turned off, as ours never fails.
//!
//! The lines are written by the thread that logs them, in order, as before: a stderr
//! that stops reading (a full pipe) holds that thread, as it always did. The workers
//! never log; the control thread's lines are few (rate-limited drop summaries, one line
//! per port event).
use std::{
    fmt,
    io::{self, Write},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

/// Log lines dropped since start, whichever writer dropped them.
static LINES_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped since start because stderr refused them.
pub fn lines_dropped() -> u64 {
    LINES_DROPPED.load(Ordering::Relaxed)
}

use tracing_subscriber::fmt::{
    MakeWriter,
    format::Writer,
    time::{FormatTime as _, SystemTime},
};

/// The subscriber's writer: one line at a time to the sink (stderr), or dropped and
/// counted.
#[derive(Debug)]
pub struct LogWriter<W> {
    drain: Arc<Mutex<Drain<W>>>,
}

impl<W> Clone for LogWriter<W> {
    fn clone(&self) -> Self {
        Self {
            drain: Arc::clone(&self.drain),
        }
    }
}

impl<W: Write> LogWriter<W> {
    /// A writer to `sink`; `timestamps` says whether its own warning about dropped
    /// lines carries one (as the subscriber's lines do).
    pub fn new(sink: W, timestamps: bool) -> Self {
        Self {
            drain: Arc::new(Mutex::new(Drain {
                sink,
                timestamps,
                failed: 0,
                error: None,
            })),
        }
    }
}

/// One event's line, written when the subscriber is done with it.
#[derive(Debug)]
pub struct Line<'a, W: Write> {
    writer: &'a LogWriter<W>,
    text: Vec<u8>,
}

impl<W: Write> Write for Line<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for Line<'_, W> {
    fn drop(&mut self) {
        if !self.text.is_empty() {
            // A thread that panicked while writing left nothing half-done that matters.
            let mut drain = self
                .writer
                .drain
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            drain.write_line(&self.text);
        }
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for LogWriter<W> {
    type Writer = Line<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            writer: self,
            text: Vec::new(),
        }
    }
}

/// Writes lines to the sink and counts those it could not.
#[derive(Debug)]
struct Drain<W> {
    sink: W,
    timestamps: bool,
    /// Lines not written since the last one that was, and the last error.
    failed: u64,
    error: Option<io::Error>,
}

/// Lines dropped between two that were written.
#[derive(Debug, PartialEq)]
struct Dropped {
    count: u64,
    /// The last write's error.
    error: String,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} log line(s) dropped: stderr failed ({})",
            self.count, self.error
        )
    }
}

impl<W: Write> Drain<W> {
    /// Writes `line`: after a warning first, when lines were dropped since the last
    /// one written. Returns what was dropped (for the tests).
    fn write_line(&mut self, line: &[u8]) -> Option<Dropped> {
        let dropped = (self.failed > 0).then(|| Dropped {
            count: self.failed,
            error: self
                .error
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
        });
        let mut text = Vec::new();
        if let Some(dropped) = &dropped {
            let mut time = String::new();
            if self.timestamps {
                let _ = SystemTime.format_time(&mut Writer::new(&mut time));
                time.push(' ');
            }
            text.extend_from_slice(
                format!("{time} WARN {}: {dropped}\n", module_path!()).as_bytes(),
            );
        }
        text.extend_from_slice(line);
        match self.sink.write_all(&text).and_then(|()| self.sink.flush()) {
            Ok(()) => {
                self.failed = 0;
                self.error = None;
                dropped
            }
            Err(e) => {
                self.failed += 1;
                LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
                self.error = Some(e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that fails while `broken` is set and keeps what it is given otherwise.
    #[derive(Clone, Default)]
    struct Sink {
        written: Arc<Mutex<Vec<u8>>>,
        broken: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Sink {
        fn broken(&self, broken: bool) {
            self.broken
                .store(broken, std::sync::atomic::Ordering::Relaxed);
        }

        fn text(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.broken.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_a_failing_stderr_refuses_are_dropped_and_counted_once_it_works_again() {
        let sink = Sink::default();
        let writer = LogWriter::new(sink.clone(), false);
        let log = |line: &str| {
            writer
                .make_writer()
                .write_all(line.as_bytes())
                .expect("a log line never fails")
        };
        log("one\n");
        sink.broken(true);
        let before = lines_dropped();
        log("two\n");
        log("three\n");
        // (Other tests may drop lines at the same time: at least these two.)
        assert!(lines_dropped() - before >= 2);
        sink.broken(false);
        log("four\n");
        log("five\n");
        assert_eq!(
            sink.text(),
            "one\n WARN hairpin::logging: 2 log line(s) dropped: stderr failed (broken pipe)\n\
             four\nfive\n"
        );
    }

    #[test]
    fn the_warning_carries_a_timestamp_when_the_lines_do() {
        let sink = Sink::default();
        let mut drain = Drain {
            sink: sink.clone(),
            timestamps: true,
            failed: 3,
            error: Some(io::Error::from(io::ErrorKind::BrokenPipe)),
        };
        let dropped = drain.write_line(b"next\n").expect("a report");
        assert_eq!(dropped.count, 3);
        let text = sink.text();
        // 2026-04-20T10:00:00.123456Z  WARN ...
        let (time, rest) = text.split_once(' ').expect("a timestamp first");
        assert!(time.ends_with('Z') && time.contains('T'), "{text}");
        assert!(
            rest.starts_with(" WARN hairpin::logging: 3 log line(s)"),
            "{text}"
        );
        assert_eq!(drain.write_line(b"then\n"), None, "reported once");
    }
}
