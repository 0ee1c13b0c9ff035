//! `hairpin capture`: the client of a capture.
//!
//! It sends [`Request::Capture`] on the control socket; hairpin answers
//! [`Response::Capturing`] and then streams pcapng on the same connection
//! ([`hairpin::control::protocol::capture_stream`]), read here with pcap-file's
//! [`PcapNgReader`], block by block as it comes. Each frame is printed as a line
//! ([`text`]), or written with `-w` as pcapng (the blocks as read, the statistics block
//! included) or classic pcap (`--pcap`), flushed after each block so a reader at the
//! other end of a pipe (`-w - | tcpdump -r -`) sees the frames as they come. hairpin
//! enforces the count, the seconds and the filter; this side only reports.
//!
//! The capture ends when hairpin writes its statistics block and closes: the summary
//! goes to stderr. The first SIGINT or SIGTERM shuts down the write side of the
//! connection (from the signal handler: `shutdown(2)` is async-signal-safe), which is
//! how hairpin is told to stop; the frames still on their way and the statistics are
//! read as usual. A second one exits at once. A stream that ends without its statistics
//! (hairpin stopped or failed) is an error. A reader that goes away (`| head`: EPIPE,
//! as Rust ignores SIGPIPE) ends the capture quietly.
use std::{
    cell::RefCell,
    ffi::c_int,
    fs::File,
    io::{self, BufWriter, IsTerminal as _, Read, Write},
    os::{fd::AsRawFd as _, unix::net::UnixStream},
    path::Path,
    rc::Rc,
    sync::atomic::{AtomicI32, AtomicU32, Ordering},
};

use anyhow::{Context as _, Result, anyhow, bail};
use hairpin::control::{
    protocol::{Direction, MAX_SNAPLEN, Request, Response},
    service,
};
use pcap_file::{
    Endianness, PcapError, TsResolution,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        Block, PcapNgReader, PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            section_header::SectionHeaderBlock,
        },
    },
};

use super::args::CaptureArgs;

#[cfg(test)]
mod tests;
mod text;

use text::Summary;

/// `hairpin capture`: runs a capture to its end, the summary on stderr.
pub(crate) fn run(args: &CaptureArgs) -> Result<()> {
    session(args, &mut io::stderr())
}

/// A capture, with its notes (what it captures, the summary) written to `notes`.
fn session(args: &CaptureArgs, notes: &mut dyn Write) -> Result<()> {
    // A file that cannot be written is refused before the capture starts.
    let (format, out, name) = open_output(args)?;
    let request = Request::Capture(args.request());
    let (response, reader) = service::open(&args.socket, &request)?;
    let port = match response {
        Response::Capturing { port, direction } => {
            let _ = writeln!(
                notes,
                "capturing on {port} ({}), snapshot length {} bytes; Ctrl-C to stop",
                match direction {
                    Direction::In => "frames received",
                    Direction::Out => "frames sent",
                    Direction::Both => "frames received and sent",
                },
                args.snaplen.unwrap_or(MAX_SNAPLEN)
            );
            port
        }
        Response::Error { message } => bail!("{message}"),
        other => bail!("hairpin answered the capture request with {other:?}; is it older?"),
    };
    // The stream may be quiet for as long as the port is.
    reader.get_ref().set_read_timeout(None)?;
    let connection = reader.get_ref().try_clone()?;
    let end = {
        let _signals = StopOnSignal::install(&connection)?;
        receive(reader, format, out)
    };
    match end {
        Ok(End::Complete(summary)) => {
            let _ = writeln!(notes, "{}", summary.text(&port));
            Ok(())
        }
        Ok(End::OutputClosed) => {
            let _ = connection.shutdown(std::net::Shutdown::Both);
            Ok(())
        }
        Err(Failure::Stream(e)) => Err(e.context(format!("capture on {port}"))),
        Err(Failure::Output(e)) => Err(anyhow::Error::new(e).context(format!("writing to {name}"))),
    }
}

/// How the frames are given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// A line per frame.
    Text,
    /// pcapng, the blocks as read.
    PcapNg,
    /// Classic pcap, nanosecond timestamps.
    Pcap,
}

/// Where the frames go, and its name for messages.
fn open_output(args: &CaptureArgs) -> Result<(Format, Box<dyn Write>, String)> {
    let Some(path) = args.write.as_deref() else {
        return Ok((Format::Text, Box::new(io::stdout().lock()), "stdout".into()));
    };
    let format = if args.pcap {
        Format::Pcap
    } else {
        Format::PcapNg
    };
    if path == Path::new("-") {
        let stdout = io::stdout();
        if stdout.is_terminal() {
            bail!(
                "-w -: stdout is a terminal; pipe it (`-w - | tcpdump -r - -nn`), or give -w FILE"
            );
        }
        // Unbuffered underneath: one write per block, flushed at once.
        let fd = std::os::fd::AsFd::as_fd(&stdout).try_clone_to_owned()?;
        return Ok((
            format,
            Box::new(BufWriter::new(File::from(fd))),
            "stdout".into(),
        ));
    }
    let file = File::create(path).with_context(|| {
        format!(
            "{}: creating the capture file (is its directory there and writable?)",
            path.display()
        )
    })?;
    Ok((
        format,
        Box::new(BufWriter::new(file)),
        path.display().to_string(),
    ))
}

/// How a capture's stream ended, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// hairpin sent its statistics and closed.
    Complete(Summary),
    /// The output went away (a pipe's reader exited): the capture was left.
    OutputClosed,
}

/// Why a capture failed: its stream, or where it was written.
#[derive(Debug)]
enum Failure {
    /// The stream was cut short or malformed.
    Stream(anyhow::Error),
    /// The output could not be written.
    Output(io::Error),
}

/// Reads a capture stream to its end, giving its frames to `out` as `format` says.
fn receive(reader: impl Read, format: Format, out: impl Write) -> Result<End, Failure> {
    let mut reader = PcapNgReader::new(Restarting(reader))
        .map_err(|e| stream_failure(e, "before its stream began"))?;
    let mut sink = match Sink::new(format, out, reader.section()) {
        Ok(sink) => sink,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(End::OutputClosed),
        Err(e) => return Err(Failure::Output(e)),
    };
    let mut received = 0;
    let mut summary = None;
    while let Some(block) = reader.next_block() {
        let block = block.map_err(|e| stream_failure(e, &format!("after {received} frame(s)")))?;
        match &block {
            Block::EnhancedPacket(_) => received += 1,
            Block::InterfaceStatistics(isb) => summary = Some(Summary::new(isb, received)),
            _ => {}
        }
        match sink.write(&block) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(End::OutputClosed),
            // A block the output's format cannot take: the stream is at fault.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Failure::Stream(anyhow::Error::new(e).context(format!(
                    "the stream is not pcapng as hairpin writes it (after {received} frame(s))"
                ))));
            }
            Err(e) => return Err(Failure::Output(e)),
        }
    }
    summary.map(End::Complete).ok_or_else(|| {
        Failure::Stream(anyhow!(
            "the stream ended without its statistics after {received} frame(s): hairpin \
             stopped or failed (see its log)"
        ))
    })
}

/// A failure reading the stream `when` (`after 3 frame(s)`), in words.
fn stream_failure(e: PcapError, when: &str) -> Failure {
    Failure::Stream(match e {
        PcapError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            anyhow!("the stream was cut short {when}: hairpin stopped or failed (see its log)")
        }
        PcapError::IoError(e) => {
            anyhow::Error::new(e).context(format!("reading the stream {when}"))
        }
        e => anyhow::Error::new(e).context(format!(
            "the stream is not pcapng as hairpin writes it ({when})"
        )),
    })
}

/// A reader that retries a read a signal interrupted (Ctrl-C while waiting).
struct Restarting<R>(R);

impl<R: Read> Read for Restarting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }
}

/// Where the blocks go, in their format.
enum Sink<W: Write> {
    /// A line per frame.
    Text {
        /// The lines' output.
        out: W,
        /// The interface's `if_tsresol`.
        tsresol: u8,
    },
    /// The blocks as read.
    PcapNg(PcapNgWriter<W>),
    /// Classic pcap, its header written at the interface description.
    Pcap {
        /// The output, shared with the writer so that it can be flushed.
        out: Shared<W>,
        /// The writer, once the interface is known.
        writer: Option<PcapWriter<Shared<W>>>,
        /// The interface's `if_tsresol`.
        tsresol: u8,
        /// Its snap length.
        snaplen: u32,
    },
}

impl<W: Write> Sink<W> {
    /// A sink writing to `out`; pcapng begins with the section header now.
    fn new(format: Format, out: W, section: &SectionHeaderBlock<'static>) -> io::Result<Self> {
        Ok(match format {
            Format::Text => Self::Text {
                out,
                tsresol: text::DEFAULT_TSRESOL,
            },
            Format::PcapNg => {
                let mut writer =
                    PcapNgWriter::with_section_header(out, section.clone()).map_err(io_error)?;
                writer.get_mut().flush()?;
                Self::PcapNg(writer)
            }
            Format::Pcap => Self::Pcap {
                out: Shared(Rc::new(RefCell::new(out))),
                writer: None,
                tsresol: text::DEFAULT_TSRESOL,
                snaplen: MAX_SNAPLEN,
            },
        })
    }

    /// Gives one block, then flushes.
    fn write(&mut self, block: &Block<'_>) -> io::Result<()> {
        match self {
            Self::Text { out, tsresol } => match block {
                Block::InterfaceDescription(idb) => *tsresol = tsresol_of(idb),
                Block::EnhancedPacket(epb) => {
                    let time = text::timestamp(epb.timestamp, *tsresol);
                    let clock = text::clock(time, local_utc_offset(time.as_secs()));
                    writeln!(out, "{}", text::frame_line(&clock, epb))?;
                    out.flush()?;
                }
                _ => {}
            },
            Self::PcapNg(writer) => {
                writer.write_block(block).map_err(io_error)?;
                writer.get_mut().flush()?;
            }
            Self::Pcap {
                out,
                writer,
                tsresol,
                snaplen,
            } => match block {
                Block::InterfaceDescription(idb) if writer.is_none() => {
                    *tsresol = tsresol_of(idb);
                    if idb.snaplen > 0 {
                        *snaplen = idb.snaplen;
                    }
                    let header = PcapHeader {
                        datalink: idb.linktype,
                        snaplen: *snaplen,
                        ts_resolution: TsResolution::NanoSecond,
                        endianness: Endianness::native(),
                        ..PcapHeader::default()
                    };
                    *writer = Some(PcapWriter::with_header(out.clone(), header).map_err(io_error)?);
                    out.flush()?;
                }
                Block::EnhancedPacket(epb) => {
                    let Some(writer) = writer else {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the stream has a frame before its interface description",
                        ));
                    };
                    writer
                        .write_packet(&pcap_packet(epb, *tsresol, *snaplen))
                        .map_err(io_error)?;
                    out.flush()?;
                }
                _ => {}
            },
        }
        Ok(())
    }
}

/// A frame as a classic pcap packet: its time, length and bytes (cut at `snaplen`).
fn pcap_packet<'a>(epb: &'a EnhancedPacketBlock<'_>, tsresol: u8, snaplen: u32) -> PcapPacket<'a> {
    let kept = epb.data.len().min(snaplen as usize);
    PcapPacket::new(
        text::timestamp(epb.timestamp, tsresol),
        epb.original_len.max(kept as u32),
        &epb.data[..kept],
    )
}

/// An interface's `if_tsresol`.
fn tsresol_of(idb: &InterfaceDescriptionBlock<'_>) -> u8 {
    idb.options
        .iter()
        .find_map(|o| match o {
            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
            _ => None,
        })
        .unwrap_or(text::DEFAULT_TSRESOL)
}

/// pcap-file's error as the I/O error it mostly is (a broken pipe stays one).
fn io_error(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        e => io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

/// An output shared by the pcap writer (which owns its writer) and the loop that flushes
/// it after each frame.
struct Shared<W>(Rc<RefCell<W>>);

impl<W> Clone for Shared<W> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<W: Write> Write for Shared<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// Seconds east of UTC in the local time zone at `secs` since the Unix epoch (0 where it
/// cannot be told).
fn local_utc_offset(secs: u64) -> i64 {
    let Ok(time) = libc::time_t::try_from(secs) else {
        return 0;
    };
    // SAFETY: `tm` is plain integers and a pointer, for which zero is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    if unsafe { libc::localtime_r(&time, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

/// The capture's connection, for the signal handler (-1: none).
static CONNECTION: AtomicI32 = AtomicI32::new(-1);
/// Stop signals received during this capture.
static SIGNALS: AtomicU32 = AtomicU32::new(0);

/// SIGINT or SIGTERM during a capture: the first shuts down the connection's write side
/// (hairpin then ends the capture: statistics, close); a second exits at once.
extern "C" fn on_stop_signal(signal: c_int) {
    if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
        let fd = CONNECTION.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: shutdown(2) is async-signal-safe; `fd` is the connection's, open
            // while it is registered (StopOnSignal clears it before the connection closes).
            unsafe { libc::shutdown(fd, libc::SHUT_WR) };
        }
    } else {
        // SAFETY: _exit(2) is async-signal-safe: the user asked twice, nothing is kept.
        unsafe { libc::_exit(128 + signal) };
    }
}

/// While it lives, SIGINT and SIGTERM stop the capture on its connection
/// ([`on_stop_signal`]); dropped, the previous handlers are back.
struct StopOnSignal {
    /// The handlers before, by signal.
    previous: Vec<(c_int, libc::sigaction)>,
}

impl StopOnSignal {
    /// Registers `connection` and installs the handler for SIGINT and SIGTERM.
    fn install(connection: &UnixStream) -> io::Result<Self> {
        SIGNALS.store(0, Ordering::SeqCst);
        CONNECTION.store(connection.as_raw_fd(), Ordering::SeqCst);
        let mut guard = Self {
            previous: Vec::new(),
        };
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: `sigaction` is plain data, for which zero is a valid value.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_stop_signal as extern "C" fn(c_int) as libc::sighandler_t;
            // Reads and writes go on after the handler (the stream must be read on).
            action.sa_flags = libc::SA_RESTART;
            // SAFETY: as above.
            let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: both pointers are valid for the call; the handler only calls
            // async-signal-safe functions and touches atomics.
            if unsafe { libc::sigaction(signal, &action, &mut previous) } != 0 {
                return Err(io::Error::last_os_error());
            }
            guard.previous.push((signal, previous));
        }
        Ok(guard)
    }
}

impl Drop for StopOnSignal {
    fn drop(&mut self) {
        for (signal, previous) in &self.previous {
            // SAFETY: `previous` is what sigaction gave for this signal.
            unsafe { libc::sigaction(*signal, previous, std::ptr::null_mut()) };
        }
        CONNECTION.store(-1, Ordering::SeqCst);
    }
}
