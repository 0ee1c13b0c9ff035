//! Where `hairpin top`'s frames go: a terminal redrawn in place, or a pipe, and the
//! signals that end the live view with the cursor shown again.
use std::{
    io::{self, Write},
    sync::{Arc, atomic::AtomicBool},
};

use anyhow::Result;
use signal_hook::{
    SigId,
    consts::{SIGINT, SIGTERM},
};

const HIDE_CURSOR: &str = "\x1b[?25l";
const SHOW_CURSOR: &str = "\x1b[?25h";
const CLEAR_SCREEN: &str = "\x1b[2J";
const HOME: &str = "\x1b[H";
const CLEAR_TO_LINE_END: &str = "\x1b[K";
const CLEAR_TO_SCREEN_END: &str = "\x1b[J";

/// Where frames go: redrawn in place on a terminal (cursor hidden until dropped), else
/// one after another with a blank line between.
pub(super) struct Screen<W: Write> {
    out: W,
    terminal: bool,
    frames: u64,
}

impl<W: Write> Screen<W> {
    pub(super) fn new(out: W, terminal: bool) -> Self {
        Self {
            out,
            terminal,
            frames: 0,
        }
    }

    /// Shows `frame` in place of the previous one.
    pub(super) fn draw(&mut self, frame: &str) -> io::Result<()> {
        if self.terminal {
            if self.frames == 0 {
                write!(self.out, "{HIDE_CURSOR}{CLEAR_SCREEN}")?;
            }
            // Overwriting line by line, then clearing what is left, does not flicker
            // the way clearing the whole screen first does.
            write!(self.out, "{HOME}")?;
            for line in frame.lines() {
                writeln!(self.out, "{line}{CLEAR_TO_LINE_END}")?;
            }
            write!(self.out, "{CLEAR_TO_SCREEN_END}")?;
        } else {
            if self.frames > 0 {
                writeln!(self.out)?;
            }
            write!(self.out, "{frame}")?;
        }
        self.frames += 1;
        self.out.flush()
    }
}

impl<W: Write> Drop for Screen<W> {
    fn drop(&mut self) {
        if self.terminal && self.frames > 0 {
            let _ = write!(self.out, "{SHOW_CURSOR}");
            let _ = self.out.flush();
        }
    }
}

/// SIGINT and SIGTERM raise a flag instead of ending the process, so that the cursor
/// is shown again; a second one while the flag is up ends it at once (a server that
/// does not answer holds a request for up to 30 s). Unregistered when dropped.
#[derive(Debug)]
pub(super) struct Signals(Vec<SigId>);

impl Signals {
    pub(super) fn register(stop: &Arc<AtomicBool>) -> Result<Self> {
        let mut ids = Vec::new();
        for signal in [SIGINT, SIGTERM] {
            // The conditional exit goes first: it sees the flag as it was before this
            // signal raised it.
            ids.push(signal_hook::flag::register_conditional_shutdown(
                signal,
                130,
                Arc::clone(stop),
            )?);
            ids.push(signal_hook::flag::register(signal, Arc::clone(stop))?);
        }
        Ok(Self(ids))
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for &id in &self.0 {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_is_redrawn_in_place_and_a_pipe_gets_one_frame_after_another() {
        let mut out = Vec::new();
        {
            let mut screen = Screen::new(&mut out, true);
            screen.draw("a\nb\n").unwrap();
            screen.draw("c\n").unwrap();
        }
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "\x1b[?25l\x1b[2J\x1b[Ha\x1b[K\nb\x1b[K\n\x1b[J\x1b[Hc\x1b[K\n\x1b[J\x1b[?25h"
        );
        let mut out = Vec::new();
        {
            let mut screen = Screen::new(&mut out, false);
            screen.draw("a\nb\n").unwrap();
            screen.draw("c\n").unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "a\nb\n\nc\n");
    }
}
