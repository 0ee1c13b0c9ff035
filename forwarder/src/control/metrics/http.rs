//! The metrics endpoint's HTTP/1.1 server: one thread, non-blocking sockets and `poll(2)`,
//! and a bound on everything a client controls.
//!
//! - **Head size.** A request's head (request line and header fields, at most
//!   [`MAX_HEADERS`] of them) is read into at most [`Limits::max_head`] bytes and parsed
//!   by `httparse`. A head that does not fit is answered `431` and no more of it is kept.
//! - **Requests per connection: one.** The answer says `Connection: close`; whatever the
//!   client sent after the first head (pipelined requests, a body) is read and dropped,
//!   never answered.
//! - **Connections: [`Limits::max_connections`].** One more closes the oldest: first one
//!   already answered, then one still sending its request, last one being answered. Idle
//!   connections cannot keep a scrape out.
//! - **Deadlines per connection.** Its head within [`Limits::head_timeout`] of the accept,
//!   its answer written within [`Limits::write_timeout`] of the head; then the client has
//!   [`Limits::linger`] (and [`Limits::linger_bytes`] of input) to close its side, so
//!   that closing does not reset the connection before the client read the answer.
//! - **Threads: one.** Reads and writes never block, so a client that sends slowly or
//!   does not read holds its own connection only; the others are served meanwhile.
//!
//! Memory is bounded by `max_connections` times a head and one answer.
use std::{
    io::{self, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    sync::Arc,
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime},
};

use crate::sys::{self, EventFd};

/// The most header fields a request may have (`431` beyond).
pub(super) const MAX_HEADERS: usize = 64;

/// What one connection may take of the server.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// The most bytes of a request's head.
    pub max_head: usize,
    /// The most connections open at once.
    pub max_connections: usize,
    /// From the accept to the end of the request's head.
    pub head_timeout: Duration,
    /// From the request's head to the last byte of its answer written.
    pub write_timeout: Duration,
    /// From the answer written to the client closing its side.
    pub linger: Duration,
    /// The most bytes read and dropped after the answer.
    pub linger_bytes: usize,
}

impl Default for Limits {
    /// 16 KiB of head (Node.js's default; a request with a bearer token takes a few KiB),
    /// 16 connections (a Prometheus pair and an operator need three), 10 s to send a
    /// request, 30 s to read the answer (longer than Prometheus's default scrape
    /// timeout), 1 s and 1 MiB to close.
    fn default() -> Self {
        Self {
            max_head: 16 * 1024,
            max_connections: 16,
            head_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(1),
            linger_bytes: 1024 * 1024,
        }
    }
}

/// A request's head, as the handler sees it.
#[derive(Debug)]
pub(super) struct Head<'a> {
    /// `GET`, `HEAD`, ...
    pub method: &'a str,
    /// The request target as sent: `/metrics?x=y`.
    pub target: &'a str,
    headers: &'a [httparse::Header<'a>],
}

impl<'a> Head<'a> {
    /// A head with these fields (the server parses them; tests make them).
    pub fn new(method: &'a str, target: &'a str, headers: &'a [httparse::Header<'a>]) -> Self {
        Self {
            method,
            target,
            headers,
        }
    }

    /// The values of every header field called `name` (any case) that are text.
    pub fn header(&self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
    }
}

/// An answer: a status, the body's type and the body.
#[derive(Debug)]
pub(super) struct Reply {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body (not sent to a `HEAD` request; its length is).
    pub body: Vec<u8>,
}

impl Reply {
    /// An answer whose body is `body`.
    pub fn text(status: u16, content_type: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type,
            body: body.into().into_bytes(),
        }
    }

    /// The answer on the wire: status line, header fields and (unless `head_only`) body.
    fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "",
        };
        let allow = if self.status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nDate: {}\r\n\
             {allow}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            httpdate::fmt_http_date(SystemTime::now()),
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The running server; dropping it closes every connection and stops the thread.
pub(super) struct Server {
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
    /// The most bytes of a head held for one connection so far.
    #[cfg(test)]
    most_buffered: Arc<std::sync::atomic::AtomicUsize>,
}

impl Server {
    /// The address it listens on (the port is real when `:0` was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.notify();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Listens on `addr` and answers each request with what `handler` makes of its head, on
/// one thread named `name` that keeps off the workers' `cores`.
pub(super) fn spawn(
    name: &str,
    addr: SocketAddr,
    cores: &[usize],
    limits: Limits,
    handler: impl FnMut(&Head<'_>) -> Reply + Send + 'static,
) -> io::Result<Server> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(EventFd::new()?);
    let mut server = Loop {
        listener,
        stop: Arc::clone(&stop),
        limits,
        handler,
        conns: Vec::new(),
        opened: 0,
        accept_paused_until: None,
        scratch: vec![0; 64 * 1024].into_boxed_slice(),
        #[cfg(test)]
        most_buffered: Default::default(),
    };
    #[cfg(test)]
    let most_buffered = Arc::clone(&server.most_buffered);
    let cores = cores.to_vec();
    let thread = thread::Builder::new().name(name.into()).spawn(move || {
        crate::sys::keep_off(&cores);
        server.run();
    })?;
    Ok(Server {
        stop,
        thread: Some(thread),
        addr,
        #[cfg(test)]
        most_buffered,
    })
}

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    /// Answered; waiting for the client to close (first to go when one more comes).
    Closing,
    /// Reading the request's head.
    Head,
    /// Writing the answer.
    Answer,
}

/// One client's connection.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    state: State,
    /// Its rank among the connections accepted (lower: older).
    opened: u64,
    /// When the current state's time is up.
    deadline: Instant,
    /// The head read so far (at most `max_head` bytes).
    head: Vec<u8>,
    /// The answer and how much of it is written.
    out: Vec<u8>,
    written: usize,
    /// Bytes read and dropped since the answer.
    drained: usize,
}

/// The server thread's state.
struct Loop<H> {
    listener: TcpListener,
    stop: Arc<EventFd>,
    limits: Limits,
    handler: H,
    conns: Vec<Conn>,
    opened: u64,
    /// After an accept failed for lack of descriptors or memory: not before then.
    accept_paused_until: Option<Instant>,
    /// Where input is read before it is kept (a head's part) or dropped.
    scratch: Box<[u8]>,
    #[cfg(test)]
    most_buffered: Arc<std::sync::atomic::AtomicUsize>,
}

impl<H: FnMut(&Head<'_>) -> Reply> Loop<H> {
    /// Serves until the stop eventfd is readable.
    fn run(&mut self) {
        let mut fds = Vec::new();
        loop {
            let now = Instant::now();
            let accepting = self.accept_paused_until.is_none_or(|t| t <= now);
            fds.clear();
            fds.push(crate::sys::pollfd(self.stop.raw(), libc::POLLIN));
            let listening = if accepting { libc::POLLIN } else { 0 };
            fds.push(crate::sys::pollfd(self.listener.as_raw_fd(), listening));
            for conn in &self.conns {
                let events = match conn.state {
                    State::Head | State::Closing => libc::POLLIN,
                    State::Answer => libc::POLLOUT,
                };
                fds.push(crate::sys::pollfd(conn.stream.as_raw_fd(), events));
            }
            sys::poll(&mut fds, self.timeout_ms(now));
            if fds[0].revents != 0 {
                return;
            }
            let now = Instant::now();
            let mut ready = fds[2..].iter().map(|f| f.revents != 0);
            let mut conns = std::mem::take(&mut self.conns);
            conns.retain_mut(|conn| {
                let keep = if ready.next().unwrap_or(false) {
                    self.step(conn, now)
                } else {
                    true
                };
                keep && conn.deadline > now
            });
            self.conns = conns;
            if fds[1].revents != 0 {
                self.accept(now);
            }
        }
    }

    /// Milliseconds until the next deadline (rounded up), or -1 for none.
    fn timeout_ms(&self, now: Instant) -> i32 {
        self.conns
            .iter()
            .map(|c| c.deadline)
            .chain(self.accept_paused_until)
            .min()
            .map_or(-1, |t| {
                let wait = t.saturating_duration_since(now);
                i32::try_from(wait.as_millis() + 1).unwrap_or(i32::MAX)
            })
    }

    /// Takes new connections, each closing the oldest when all are taken.
    fn accept(&mut self, now: Instant) {
        for _ in 0..self.limits.max_connections {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = stream.set_nonblocking(true) {
                        tracing::debug!("metrics client: {e}");
                        continue;
                    }
                    if self.conns.len() >= self.limits.max_connections {
                        self.close_oldest();
                    }
                    self.opened += 1;
                    self.conns.push(Conn {
                        stream,
                        state: State::Head,
                        opened: self.opened,
                        deadline: now + self.limits.head_timeout,
                        head: Vec::new(),
                        out: Vec::new(),
                        written: 0,
                        drained: 0,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    // Out of descriptors or memory: the listener stays readable, so wait
                    // a little rather than spin.
                    tracing::warn!("metrics endpoint: accepting a connection: {e}");
                    self.accept_paused_until = Some(now + Duration::from_millis(100));
                    return;
                }
            }
        }
        self.accept_paused_until = None;
    }

    /// Closes the connection that matters least: answered before waiting, waiting
    /// before being answered, and the oldest of those.
    fn close_oldest(&mut self) {
        if let Some(i) = (0..self.conns.len()).min_by_key(|&i| {
            let c = &self.conns[i];
            (c.state, c.opened)
        }) {
            tracing::debug!(
                "metrics endpoint: {} connections open, closing the oldest",
                self.conns.len()
            );
            self.conns.swap_remove(i);
        }
    }

    /// Moves `conn` on after poll said it is ready; false when it is done.
    fn step(&mut self, conn: &mut Conn, now: Instant) -> bool {
        match conn.state {
            State::Head => self.read_head(conn, now),
            State::Answer => write_answer(conn, now, &self.limits),
            State::Closing => match conn.stream.read(&mut self.scratch) {
                Ok(0) => false,
                Ok(n) => {
                    conn.drained += n;
                    conn.drained <= self.limits.linger_bytes
                }
                Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            },
        }
    }

    /// Reads what the client sent of its head; answers once it is complete (or cannot be).
    fn read_head(&mut self, conn: &mut Conn, now: Instant) -> bool {
        let room = (self.limits.max_head - conn.head.len()).min(self.scratch.len());
        match conn.stream.read(&mut self.scratch[..room]) {
            Ok(0) => return false,
            Ok(n) => conn.head.extend_from_slice(&self.scratch[..n]),
            Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
        }
        #[cfg(test)]
        self.most_buffered
            .fetch_max(conn.head.len(), std::sync::atomic::Ordering::Relaxed);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let (reply, head_only) = match request.parse(&conn.head) {
            Ok(httparse::Status::Complete(_)) => {
                let method = request.method.unwrap_or_default();
                let head = Head::new(method, request.path.unwrap_or_default(), request.headers);
                ((self.handler)(&head), method == "HEAD")
            }
            Ok(httparse::Status::Partial) if conn.head.len() < self.limits.max_head => {
                return true;
            }
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => (
                Reply::text(431, "text/plain", "request header fields too large\n"),
                false,
            ),
            Err(e) => (Reply::text(400, "text/plain", format!("{e}\n")), false),
        };
        conn.head = Vec::new();
        conn.out = reply.encode(head_only);
        conn.state = State::Answer;
        conn.deadline = now + self.limits.write_timeout;
        write_answer(conn, now, &self.limits)
    }
}

/// Writes what the socket takes of the answer; once all is written, closes the sending
/// side and waits for the client to close.
fn write_answer(conn: &mut Conn, now: Instant, limits: &Limits) -> bool {
    while conn.written < conn.out.len() {
        match conn.stream.write(&conn.out[conn.written..]) {
            Ok(0) => return false,
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!("metrics client: {e}");
                return false;
            }
        }
    }
    conn.out = Vec::new();
    let _ = conn.stream.shutdown(Shutdown::Write);
    conn.state = State::Closing;
    conn.deadline = now + limits.linger;
    true
}

#[cfg(test)]
mod tests {
    use std::{
        net::Ipv4Addr,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

    /// A server answering every request with `body`, counting the requests.
    fn server(limits: Limits, body: Vec<u8>) -> (Server, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        let server = spawn("test-http", LOOPBACK, &[], limits, move |head| {
            seen.fetch_add(1, Ordering::Relaxed);
            let mut reply = Reply::text(200, "text/plain", "");
            reply.body = body.clone();
            if head.target == "/echo" {
                reply.body = format!("{} {}", head.method, head.header("x-a").count()).into();
            }
            reply
        })
        .unwrap();
        (server, count)
    }

    fn connect(server: &Server) -> TcpStream {
        let stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Sends `request` on a new connection and reads to the end: (status line, head, body).
    fn exchange(server: &Server, request: &[u8]) -> (String, String, Vec<u8>) {
        let mut stream = connect(server);
        stream.write_all(request).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        split(&response)
    }

    fn split(response: &[u8]) -> (String, String, Vec<u8>) {
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("not HTTP: {}", String::from_utf8_lossy(response)));
        let head = String::from_utf8(response[..end].to_vec()).unwrap();
        let status = head.lines().next().unwrap().to_owned();
        (status, head, response[end + 4..].to_vec())
    }

    #[test]
    fn a_request_is_answered_with_its_length_a_date_and_close() {
        let (server, _) = server(Limits::default(), b"hello\n".to_vec());
        let (status, head, body) = exchange(&server, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 200 OK");
        for line in [
            "Content-Type: text/plain",
            "Content-Length: 6",
            "Connection: close",
        ] {
            assert!(head.contains(line), "{line:?} missing from:\n{head}");
        }
        assert!(
            head.contains("\r\nDate: ") && head.contains(" GMT"),
            "{head}"
        );
        assert_eq!(body, b"hello\n");
        // HEAD: the same length, no body.
        let (status, head, body) = exchange(&server, b"HEAD /x HTTP/1.0\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(head.contains("Content-Length: 6"), "{head}");
        assert!(body.is_empty());
        // The handler sees the method and the header fields, names in any case.
        let (_, _, body) = exchange(&server, b"GET /echo HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
        assert_eq!(body, b"GET 2");
    }

    #[test]
    fn a_malformed_request_is_answered_400() {
        let (server, count) = server(Limits::default(), Vec::new());
        let (status, _, _) = exchange(&server, b"GET /x HTTP/9\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        let (status, _, _) = exchange(&server, b"GET /x HTTP/1.1\r\nbad header\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_oversized_head_is_refused_with_431_and_never_buffered() {
        // Every byte read and dropped, so the client's 64 MiB all go through.
        let limits = Limits {
            linger_bytes: usize::MAX,
            linger: Duration::from_secs(30),
            ..Limits::default()
        };
        let (server, count) = server(limits, Vec::new());
        let mut stream = connect(&server);
        let mut writer = stream.try_clone().unwrap();
        let sender = thread::spawn(move || {
            writer.write_all(b"GET /metrics HTTP/1.1\r\nX-Big: ")?;
            let chunk = vec![b'a'; 1024 * 1024];
            for _ in 0..64 {
                writer.write_all(&chunk)?;
            }
            writer.shutdown(Shutdown::Write)
        });
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        sender.join().unwrap().expect("the server read every byte");
        let (status, _, _) = split(&response);
        assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
        assert_eq!(count.load(Ordering::Relaxed), 0);
        let held = server.most_buffered.load(Ordering::Relaxed);
        assert!(held <= limits.max_head, "{held} bytes held");
        // Too many fields, each small, are refused the same way.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let (status, _, _) = exchange(&server, &many);
        assert!(status.starts_with("HTTP/1.1 431 "), "{status}");
    }

    #[test]
    fn more_connections_than_the_cap_close_the_oldest_and_a_scrape_still_answers() {
        let limits = Limits {
            max_connections: 4,
            ..Limits::default()
        };
        let (server, _) = server(limits, b"ok\n".to_vec());
        let mut idle: Vec<TcpStream> = (0..40).map(|_| connect(&server)).collect();
        let began = Instant::now();
        let (status, _, body) = exchange(&server, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(
            (status.as_str(), &body[..]),
            ("HTTP/1.1 200 OK", &b"ok\n"[..])
        );
        // Well within the idle ones' head deadline (10 s), which would free a place.
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "{:?}",
            began.elapsed()
        );
        // Every idle connection but the newest three was closed by the server.
        let mut closed = 0;
        for stream in &mut idle {
            stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            if matches!(stream.read(&mut [0; 16]), Ok(0)) {
                closed += 1;
            }
        }
        assert!(closed >= 40 - 3, "{closed} of 40 idle connections closed");
    }

    #[test]
    fn a_pipelining_client_gets_one_answer_and_blocks_nobody() {
        // An answer bigger than the sockets' buffers: the server cannot finish writing
        // it to a client that does not read.
        let (server, count) = server(Limits::default(), vec![b'x'; 16 * 1024 * 1024]);
        let mut greedy = connect(&server);
        greedy
            .write_all(&b"GET /metrics HTTP/1.1\r\n\r\n".repeat(1000))
            .unwrap();
        thread::sleep(Duration::from_millis(200));
        let began = Instant::now();
        let (status, _, body) = exchange(&server, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body.len(), 16 * 1024 * 1024);
        // Well within the greedy client's write deadline (30 s), which would free it.
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{:?}",
            began.elapsed()
        );
        // The pipelining client gets its one answer, then the end.
        let mut response = Vec::new();
        greedy.read_to_end(&mut response).unwrap();
        let answers = response.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
        assert_eq!(answers, 1);
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn an_idle_or_slow_client_is_closed_at_its_deadline() {
        let limits = Limits {
            head_timeout: Duration::from_millis(300),
            write_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (server, count) = server(limits, vec![b'x'; 64 * 1024 * 1024]);
        // Half a request head, and nothing more.
        let mut idle = connect(&server);
        idle.write_all(b"GET /metrics HT").unwrap();
        let began = Instant::now();
        assert_eq!(idle.read(&mut [0; 16]).unwrap(), 0);
        let waited = began.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
            "closed after {waited:?}"
        );
        // A client that does not read its (large) answer.
        let mut slow = connect(&server);
        slow.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        thread::sleep(Duration::from_millis(1000));
        let mut response = Vec::new();
        let _ = slow.read_to_end(&mut response);
        assert!(response.len() < 64 * 1024 * 1024, "{}", response.len());
        assert_eq!(count.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn dropping_the_server_stops_it() {
        let (server, _) = server(Limits::default(), Vec::new());
        let addr = server.addr();
        let mut open = connect(&server);
        let began = Instant::now();
        drop(server);
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "{:?}",
            began.elapsed()
        );
        // Closed (reset when the server had not taken it yet), not left waiting.
        match open.read(&mut [0; 16]) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("{other:?}"),
        }
        assert!(TcpStream::connect(addr).is_err());
    }
}
