//! `hairpin capture` against synthetic streams, written with pcap-file as hairpin
//! writes them, and against a fake hairpin on a Unix socket.
use std::{
    borrow::Cow,
    io::{BufRead as _, BufReader},
    os::unix::net::UnixListener,
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use clap::Parser as _;
use hairpin::control::protocol::{
    self, CaptureRequest, ResponseLine, VERSION, capture_stream::lost_comment,
};
use pcap_file::{
    DataLink,
    pcap::PcapReader,
    pcapng::blocks::{
        enhanced_packet::EnhancedPacketOption,
        interface_statistics::{InterfaceStatisticsBlock, InterfaceStatisticsOption},
    },
};

use super::*;
use crate::cli::args::{Cli, Command};

/// When the synthetic frames were seen: a second and some nanoseconds past the epoch.
const T0: Duration = Duration::new(1_700_000_000, 123_456_789);

/// A frame: destination, source, an optional VLAN tag, the ethertype, then zeros to
/// `len` bytes.
fn frame(vlan: Option<u16>, ethertype: u16, len: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    if let Some(vid) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.resize(len, 0);
    f
}

/// A frame's block: seen `nanos` after [`T0`], in or out, with a comment or none.
fn epb(
    nanos: u64,
    flags: u32,
    data: Vec<u8>,
    comment: Option<&str>,
) -> EnhancedPacketBlock<'static> {
    let mut options = vec![EnhancedPacketOption::Flags(flags)];
    options.extend(comment.map(|c| EnhancedPacketOption::Comment(Cow::Owned(c.to_owned()))));
    EnhancedPacketBlock {
        interface_id: 0,
        timestamp: T0 + Duration::from_nanos(nanos),
        original_len: u32::try_from(data.len()).unwrap(),
        data: Cow::Owned(data),
        options,
    }
}

/// The interface as hairpin describes it: Ethernet, its name, nanoseconds.
fn idb() -> InterfaceDescriptionBlock<'static> {
    InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: MAX_SNAPLEN,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Borrowed("vf0")),
            InterfaceDescriptionOption::IfTsResol(9),
        ],
    }
}

/// Three frames: in on the fast path, out tagged, in and dropped.
fn frames() -> Vec<EnhancedPacketBlock<'static>> {
    vec![
        epb(0, 1, frame(None, 0x0800, 98), Some("fast path")),
        epb(1_000, 2, frame(Some(10), 0x86dd, 118), None),
        epb(2_000, 1, frame(None, 0x0806, 60), Some("dropped: spoofed")),
    ]
}

/// The statistics at the end: 10 seen, 4 passed the filter, 1 lost in the rings and 2
/// to a slow reader, 3 written.
fn isb() -> InterfaceStatisticsBlock<'static> {
    InterfaceStatisticsBlock {
        interface_id: 0,
        timestamp: 0,
        options: vec![
            InterfaceStatisticsOption::IsbStartTime(0),
            InterfaceStatisticsOption::IsbEndTime(0),
            InterfaceStatisticsOption::IsbIfRecv(10),
            InterfaceStatisticsOption::IsbFilterAccept(4),
            InterfaceStatisticsOption::IsbOsDrop(3),
            InterfaceStatisticsOption::IsbUsrDeliv(3),
            InterfaceStatisticsOption::Comment(Cow::Owned(lost_comment(1, 2))),
        ],
    }
}

/// The blocks after the section header of a whole capture.
fn blocks() -> Vec<Block<'static>> {
    let mut blocks = vec![Block::InterfaceDescription(idb())];
    blocks.extend(frames().into_iter().map(Block::EnhancedPacket));
    blocks.push(Block::InterfaceStatistics(isb()));
    blocks
}

/// A stream of a section header and `blocks`, as pcap-file writes it.
fn stream(blocks: &[Block<'_>]) -> Vec<u8> {
    let mut writer = PcapNgWriter::new(Vec::new()).unwrap();
    for block in blocks {
        writer.write_block(block).unwrap();
    }
    writer.into_inner()
}

/// The blocks of a pcapng stream after its section header.
fn read_back(bytes: &[u8]) -> Vec<Block<'static>> {
    let mut reader = PcapNgReader::new(bytes).unwrap();
    let mut blocks = Vec::new();
    while let Some(block) = reader.next_block() {
        blocks.push(block.unwrap().into_owned());
    }
    blocks
}

/// What `receive` gives for `input` in `format`, and what it wrote.
fn received(input: &[u8], format: Format) -> (Result<End, Failure>, Vec<u8>) {
    let mut out = Vec::new();
    let end = receive(input, format, &mut out);
    (end, out)
}

fn summary() -> Summary {
    Summary::new(&isb(), 3)
}

#[test]
fn pcapng_out_is_the_blocks_as_read() {
    let (end, out) = received(&stream(&blocks()), Format::PcapNg);
    assert_eq!(end.unwrap(), End::Complete(summary()));
    assert_eq!(read_back(&out), blocks());
}

#[test]
fn pcap_out_has_the_frames_with_nanosecond_timestamps() {
    let (end, out) = received(&stream(&blocks()), Format::Pcap);
    assert_eq!(end.unwrap(), End::Complete(summary()));
    let mut reader = PcapReader::new(&out[..]).unwrap();
    let header = reader.header();
    assert_eq!(header.ts_resolution, TsResolution::NanoSecond);
    assert_eq!(header.datalink, DataLink::ETHERNET);
    assert_eq!(header.snaplen, MAX_SNAPLEN);
    let mut read = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let p = packet.unwrap();
        read.push((p.timestamp, p.orig_len, p.data.into_owned()));
    }
    let expected: Vec<_> = frames()
        .into_iter()
        .map(|e| (e.timestamp, e.original_len, e.data.into_owned()))
        .collect();
    assert_eq!(read, expected);
    assert_eq!(read[1].0.subsec_nanos(), 123_457_789);
}

#[test]
fn text_out_is_a_line_per_frame() {
    let (end, out) = received(&stream(&blocks()), Format::Text);
    assert_eq!(end.unwrap(), End::Complete(summary()));
    let clock = |nanos| {
        let t = T0 + Duration::from_nanos(nanos);
        text::clock(t, local_utc_offset(t.as_secs()))
    };
    let expected = [
        format!(
            "{} in  98 02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 fast path",
            clock(0)
        ),
        format!(
            "{} out 118 02:00:00:00:00:01 > 02:00:00:00:00:02 vlan 10 IPv6",
            clock(1_000)
        ),
        format!(
            "{} in  60 02:00:00:00:00:01 > 02:00:00:00:00:02 ARP dropped: spoofed",
            clock(2_000)
        ),
    ];
    assert_eq!(
        String::from_utf8(out).unwrap().lines().collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn the_summary_comes_from_the_statistics_block() {
    assert_eq!(
        summary().text("vf0"),
        "3 frames captured on vf0 (10 seen, 4 passed the filter); 3 lost: 1 in hairpin's \
         capture rings, 2 to a slow reader"
    );
}

/// The error of a stream that fails.
fn failure(input: &[u8]) -> String {
    match received(input, Format::PcapNg).0 {
        Err(Failure::Stream(e)) => format!("{e:#}"),
        other => panic!("not a stream failure: {other:?}"),
    }
}

#[test]
fn a_stream_that_ends_without_its_statistics_is_an_error() {
    let mut whole = blocks();
    whole.pop();
    let e = failure(&stream(&whole));
    assert!(
        e.contains("ended without its statistics after 3 frame(s)"),
        "{e}"
    );
    let cut = stream(&blocks());
    let e = failure(&cut[..cut.len() - 10]);
    assert!(e.contains("cut short after 3 frame(s)"), "{e}");
    assert!(failure(&[]).contains("cut short before its stream began"));
    assert!(failure(b"HTTP/1.1 200 OK\r\n\r\n").contains("not pcapng"));
}

/// An output whose reader has gone, as a pipe's after `| head`.
struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_capture_quietly() {
    let input = stream(&blocks());
    for format in [Format::Text, Format::PcapNg, Format::Pcap] {
        let end = receive(&input[..], format, ClosedPipe);
        assert_eq!(end.unwrap(), End::OutputClosed, "{format:?}");
    }
}

/// A path of this test's own in the temporary directory, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("hp-capcli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `hairpin capture ARGS...` parsed.
fn capture_args(words: &[&str]) -> CaptureArgs {
    let cli = Cli::try_parse_from(["hairpin", "capture"].iter().chain(words)).unwrap();
    let Command::Capture(args) = cli.command else {
        panic!("not a capture")
    };
    *args
}

/// A fake hairpin on `socket` for one client: reads its request line, answers with
/// `answer`, and gives the request to `serve` with the connection.
fn fake_hairpin(
    socket: &Path,
    answer: Response,
    serve: impl FnOnce(Request, UnixStream) + Send + 'static,
) -> thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap();
    thread::spawn(move || {
        let (connection, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&connection).read_line(&mut line).unwrap();
        let request = protocol::parse_request(&line).unwrap();
        let mut answer = serde_json::to_string(&ResponseLine {
            version: VERSION,
            response: answer,
        })
        .unwrap();
        answer.push('\n');
        (&connection).write_all(answer.as_bytes()).unwrap();
        serve(request, connection);
    })
}

/// Frames in a pcapng file written so far (it may end inside a block).
fn frames_in(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap_or_default();
    let Ok(mut reader) = PcapNgReader::new(&bytes[..]) else {
        return 0;
    };
    let mut n = 0;
    while let Some(Ok(block)) = reader.next_block() {
        n += usize::from(matches!(block, Block::EnhancedPacket(_)));
    }
    n
}

/// The whole client against a fake hairpin: the request, the answer, two frames to a
/// file, then Ctrl-C: the client shuts down its side, hairpin sends the statistics and
/// closes, and the summary is printed.
#[test]
fn ctrl_c_stops_the_capture_and_the_summary_comes() {
    let socket = TempPath::new("stop.sock");
    let file = TempPath::new("stop.pcapng");
    let server = fake_hairpin(
        &socket.0,
        Response::Capturing {
            port: "vf0".into(),
            direction: Direction::In,
        },
        |request, mut connection| {
            assert_eq!(
                request,
                Request::Capture(CaptureRequest {
                    port: "vf0".into(),
                    direction: Direction::In,
                    filter: Some("tcp port 80".into()),
                    count: Some(50),
                    seconds: None,
                    snaplen: None,
                })
            );
            let all = blocks();
            let (idb, rest) = all.split_first().unwrap();
            let mut writer = PcapNgWriter::new(&mut connection).unwrap();
            writer.write_block(idb).unwrap();
            for block in &rest[..2] {
                writer.write_block(block).unwrap();
            }
            // Until the client shuts down its side.
            let mut rest_of_request = Vec::new();
            writer.get_mut().read_to_end(&mut rest_of_request).unwrap();
            assert!(rest_of_request.is_empty());
            writer
                .write_block(&Block::InterfaceStatistics(isb()))
                .unwrap();
        },
    );
    let socket_path = socket.0.to_str().unwrap().to_owned();
    let file_path = file.0.to_str().unwrap().to_owned();
    let client = thread::spawn(move || {
        let args = capture_args(&[
            "vf0",
            "--socket",
            &socket_path,
            "-w",
            &file_path,
            "--in",
            "-c",
            "50",
            "tcp",
            "port",
            "80",
        ]);
        let mut notes = Vec::new();
        let result = session(&args, &mut notes);
        (result, String::from_utf8(notes).unwrap())
    });
    // The frames are in the file once the handler is installed: then Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(20);
    while frames_in(&file.0) < 2 {
        assert!(
            Instant::now() < deadline,
            "the frames never reached the file"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: raise(3) has no preconditions; the capture's handler takes SIGINT now.
    assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
    let (result, notes) = client.join().unwrap();
    server.join().unwrap();
    result.unwrap();
    let lines: Vec<&str> = notes.lines().collect();
    assert_eq!(
        lines,
        [
            "capturing on vf0 (frames received), snapshot length 65535 bytes; Ctrl-C to stop",
            summary().text("vf0").as_str(),
        ]
    );
    let written = read_back(&std::fs::read(&file.0).unwrap());
    assert_eq!(written.len(), 4, "{written:?}");
    assert_eq!(written[1..3], blocks()[1..3]);
    assert_eq!(written[3], Block::InterfaceStatistics(isb()));
    assert_eq!(CONNECTION.load(Ordering::SeqCst), -1);
}

#[test]
fn a_refused_capture_fails_with_hairpins_reason() {
    let socket = TempPath::new("refused.sock");
    let server = fake_hairpin(
        &socket.0,
        Response::Error {
            message: "vf9: no such port".into(),
        },
        |_, _| {},
    );
    let args = capture_args(&["vf9", "--socket", socket.0.to_str().unwrap()]);
    let e = session(&args, &mut Vec::new()).unwrap_err();
    server.join().unwrap();
    assert_eq!(format!("{e:#}"), "vf9: no such port");
}
