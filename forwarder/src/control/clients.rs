//! The control socket's clients, served off the control thread.
//!
//! [`Clients::serve`] starts one thread (`hairpin-clients`) that serves every client of
//! the control socket with non-blocking sockets and one `poll`: it accepts a client,
//! reads its request line, parses it, hands a well-formed request to the owner of the
//! state through `dispatch` (in hairpin: into the control thread's inbox, with a wake),
//! and writes the [`Answer`] back once the owner gives it. The owner never reads or
//! writes a client, and no client waits for another:
//!
//! - a client has [`Limits::deadline`] (2 s) from its connection to send its whole
//!   request line; one that sends nothing, or trickles, is answered
//!   `{"version":1,"response":"error","message":"no request within 2 s"}` and closed;
//! - a request line is at most [`Limits::max_request`] bytes (64 KiB), its newline
//!   included; a longer one is answered with an error and closed;
//! - at most [`Limits::max_clients`] (64) clients are served at once; one more is
//!   answered `too many clients` and closed at once;
//! - an answer is written as fast as its client reads it; a client that reads none of it
//!   for [`Limits::deadline`], or has not read all of it [`ANSWER_TIME`] after it was
//!   ready, is closed;
//! - while the owner works on a request its client waits with no deadline of its own.
//!
//! A malformed request is answered here, without the owner. The protocol itself (one
//! request per connection, one JSON line each way) is [`super::protocol`]'s.
use std::{
    collections::HashMap,
    io::{self, Read as _, Write as _},
    os::{
        fd::AsRawFd as _,
        unix::net::{UnixListener, UnixStream},
    },
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use super::protocol::{self, Request, Response, ResponseLine};
use crate::sys::EventFd;

/// How long a client has to read its whole answer once it is ready.
pub const ANSWER_TIME: Duration = Duration::from_secs(30);

/// How long the listener is left alone after `accept` failed (out of descriptors, say),
/// so that a pending connection cannot make the thread spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What one client may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From its connection to its complete request line; also how long it may read
    /// none of its answer.
    pub deadline: Duration,
    /// The longest request line, newline included.
    pub max_request: usize,
    /// Clients served at once; one more is refused.
    pub max_clients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(2),
            max_request: 64 * 1024,
            max_clients: 64,
        }
    }
}

/// What takes a client's connection over once its answer is written (a capture's
/// stream, [`Answer::send_then`]); it must not block.
pub struct Handover(Box<dyn FnOnce(UnixStream) + Send>);

impl Handover {
    /// `f` takes the connection.
    pub fn new(f: impl FnOnce(UnixStream) + Send + 'static) -> Self {
        Self(Box::new(f))
    }

    /// Hands `stream` over.
    pub fn hand(self, stream: UnixStream) {
        (self.0)(stream);
    }
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handover")
    }
}

/// What goes back to the clients' thread: the client, its answer (none: its taker
/// answers), and what takes its connection after it.
type Answered = (u64, Option<Response>, Option<Handover>);

/// Where the owner puts its answer to one client's request. Dropped unanswered (the
/// owner stopped first), it answers that the request was not carried out.
#[derive(Debug)]
pub struct Answer {
    client: u64,
    to: Option<mpsc::Sender<Answered>>,
    shared: Arc<Shared>,
}

impl Answer {
    /// Answers the client.
    pub fn send(mut self, response: Response) {
        self.deliver(Some(response), None);
    }

    /// Answers the client, then hands its connection to `then` instead of closing it
    /// (if the client read the whole answer).
    pub fn send_then(mut self, response: Response, then: Handover) {
        self.deliver(Some(response), Some(then));
    }

    /// Hands the client's connection to `then` unanswered: `then` answers it.
    pub fn hand_over(mut self, then: Handover) {
        self.deliver(None, Some(then));
    }

    fn deliver(&mut self, response: Option<Response>, then: Option<Handover>) {
        if let Some(to) = self.to.take()
            && to.send((self.client, response, then)).is_ok()
        {
            self.shared.wake.notify();
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.deliver(
            Some(error(
                "the request was not carried out: hairpin is stopping",
            )),
            None,
        );
    }
}

/// What the clients' thread and the [`Answer`]s share with the handle.
#[derive(Debug)]
struct Shared {
    wake: EventFd,
    stop: AtomicBool,
}

/// The clients' thread; stopped (every client closed) when dropped.
#[derive(Debug)]
pub struct Clients {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Clients {
    /// Serves `listener` on a thread of its own, which keeps off the workers' `cores`:
    /// each well-formed request goes to `dispatch` with the [`Answer`] to give when it
    /// is carried out. `dispatch` runs on that thread and must not block (it queues the
    /// request for the owner).
    pub fn serve(
        listener: UnixListener,
        limits: Limits,
        cores: &[usize],
        dispatch: impl FnMut(Request, Answer) + Send + 'static,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            wake: EventFd::new()?,
            stop: AtomicBool::new(false),
        });
        let (answers_to, answers) = mpsc::channel();
        let cores = cores.to_vec();
        let server = Server {
            listener,
            limits,
            dispatch,
            shared: Arc::clone(&shared),
            answers_to,
            answers,
            clients: HashMap::new(),
            next: 0,
            accept_paused_until: None,
            said_full: false,
        };
        let thread = thread::Builder::new()
            .name("hairpin-clients".into())
            .spawn(move || {
                if !cores.is_empty() {
                    crate::sys::keep_off(&cores);
                }
                server.run();
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the control socket's thread panicked");
        }
    }
}

/// One client, by what it waits for.
#[derive(Debug)]
enum State {
    /// Its request line, until `deadline`.
    Reading { line: Vec<u8>, deadline: Instant },
    /// The owner's answer.
    Waiting,
    /// To read `out[at..]`: some of it before `deadline`, all of it before `last`.
    Writing {
        out: Vec<u8>,
        at: usize,
        deadline: Instant,
        last: Instant,
        then: Option<Handover>,
    },
}

#[derive(Debug)]
struct Client {
    stream: UnixStream,
    state: State,
}

/// The clients' thread's state.
struct Server<D> {
    listener: UnixListener,
    limits: Limits,
    dispatch: D,
    shared: Arc<Shared>,
    answers_to: mpsc::Sender<Answered>,
    answers: mpsc::Receiver<Answered>,
    clients: HashMap<u64, Client>,
    next: u64,
    accept_paused_until: Option<Instant>,
    /// Whether the refusal of a client past the cap was logged (once per time full).
    said_full: bool,
}

impl<D: FnMut(Request, Answer)> Server<D> {
    fn run(mut self) {
        loop {
            let now = Instant::now();
            let mut fds = vec![crate::sys::pollfd(self.shared.wake.raw(), libc::POLLIN)];
            let listening = self.accept_paused_until.is_none_or(|until| now >= until);
            if listening {
                self.accept_paused_until = None;
                fds.push(crate::sys::pollfd(self.listener.as_raw_fd(), libc::POLLIN));
            }
            let first_client = fds.len();
            let mut ids = Vec::with_capacity(self.clients.len());
            for (&id, client) in &self.clients {
                let events = match client.state {
                    State::Reading { .. } => libc::POLLIN,
                    State::Writing { .. } => libc::POLLOUT,
                    State::Waiting => continue,
                };
                fds.push(crate::sys::pollfd(client.stream.as_raw_fd(), events));
                ids.push(id);
            }
            crate::sys::poll(&mut fds, self.timeout_ms(now));
            self.shared.wake.drain();
            if self.shared.stop.load(Ordering::Acquire) {
                return;
            }
            while let Ok((id, response, then)) = self.answers.try_recv() {
                let Some(response) = response else {
                    if let (Some(client), Some(then)) = (self.clients.remove(&id), then) {
                        then.hand(client.stream);
                    }
                    continue;
                };
                if let Some(client) = self.clients.get_mut(&id) {
                    client.state = writing(response, &self.limits, Instant::now());
                    if let State::Writing { then: t, .. } = &mut client.state {
                        *t = then;
                    }
                    self.step(id);
                }
            }
            for (fd, id) in fds[first_client..].iter().zip(ids) {
                if fd.revents != 0 {
                    self.step(id);
                }
            }
            self.expire(Instant::now());
            if listening && fds[1].revents != 0 {
                self.accept();
            }
        }
    }

    /// Milliseconds until the nearest deadline (rounded up), or -1: none.
    fn timeout_ms(&self, now: Instant) -> i32 {
        let deadlines = self.clients.values().filter_map(|c| match c.state {
            State::Reading { deadline, .. } | State::Writing { deadline, .. } => Some(deadline),
            State::Waiting => None,
        });
        deadlines
            .chain(self.accept_paused_until)
            .min()
            .map_or(-1, |d| {
                let micros = d.saturating_duration_since(now).as_micros();
                i32::try_from(micros.div_ceil(1000)).unwrap_or(i32::MAX)
            })
    }

    /// Takes every pending connection: served, or refused past the cap.
    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.clients.len() >= self.limits.max_clients {
                        self.refuse(stream);
                        continue;
                    }
                    self.said_full = false;
                    let id = self.next;
                    self.next += 1;
                    let deadline = Instant::now() + self.limits.deadline;
                    let line = Vec::new();
                    let state = State::Reading { line, deadline };
                    self.clients.insert(id, Client { stream, state });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("control socket: accepting a client: {e}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Answers a client past the cap, if its socket takes the line at once, and closes it.
    fn refuse(&mut self, stream: UnixStream) {
        let max = self.limits.max_clients;
        if !self.said_full {
            self.said_full = true;
            tracing::warn!(
                "control socket: {max} clients at once; refusing more until one is done"
            );
        }
        let out = line(error(format!(
            "too many clients: {max} are being served; try again"
        )));
        let _ = (&stream).write(&out);
    }

    /// Reads or writes client `id` as far as its socket allows now.
    fn step(&mut self, id: u64) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let keep = match &mut client.state {
            State::Reading { line, .. } => match read_line(&client.stream, line, &self.limits) {
                Ok(None) => true,
                Ok(Some(Ok(request))) => {
                    client.state = State::Waiting;
                    let answer = Answer {
                        client: id,
                        to: Some(self.answers_to.clone()),
                        shared: Arc::clone(&self.shared),
                    };
                    (self.dispatch)(request, answer);
                    true
                }
                Ok(Some(Err(message))) => {
                    client.state = writing(error(message), &self.limits, Instant::now());
                    write_out(&client.stream, &mut client.state, &self.limits)
                }
                Err(e) => {
                    tracing::debug!("control socket client: {e}");
                    false
                }
            },
            State::Waiting => true,
            State::Writing { .. } => write_out(&client.stream, &mut client.state, &self.limits),
        };
        if !keep && let Some(client) = self.clients.remove(&id) {
            // Answered whole, and taken over: the connection lives on there.
            if let State::Writing { out, at, then, .. } = client.state
                && at == out.len()
                && let Some(then) = then
            {
                then.hand(client.stream);
            }
        }
    }

    /// Answers the clients whose request is late, and closes those that do not read
    /// their answer.
    fn expire(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| match c.state {
                State::Reading { deadline, .. } | State::Writing { deadline, .. } => {
                    now >= deadline
                }
                State::Waiting => false,
            })
            .map(|(&id, _)| id)
            .collect();
        let within = seconds(self.limits.deadline);
        for id in late {
            let Some(client) = self.clients.get_mut(&id) else {
                continue;
            };
            if let State::Reading { line, .. } = &client.state {
                let message = if line.is_empty() {
                    format!("no request within {within}")
                } else {
                    format!("request line not complete within {within}")
                };
                tracing::debug!("control socket client: {message}");
                client.state = writing(error(message), &self.limits, now);
                self.step(id);
            } else {
                tracing::debug!("control socket client: did not read its answer; closed");
                self.clients.remove(&id);
            }
        }
    }
}

/// Reads what `stream` has of its request line into `line`: nothing complete yet
/// (`None`), the request, or why it is refused. A client that closes its end without
/// a newline has sent its line.
fn read_line(
    mut stream: &UnixStream,
    line: &mut Vec<u8>,
    limits: &Limits,
) -> io::Result<Option<Result<Request, String>>> {
    let mut chunk = [0_u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let end = chunk[..n].iter().position(|&b| b == b'\n');
        line.extend_from_slice(&chunk[..end.unwrap_or(n)]);
        // The newline counts: a line of `max_request` bytes without one is too long.
        if line.len() >= limits.max_request {
            return Ok(Some(Err(format!(
                "request longer than {} bytes",
                limits.max_request
            ))));
        }
        if end.is_some() || n == 0 {
            return Ok(Some(parse(line)));
        }
    }
}

fn parse(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|_| "malformed request: not UTF-8")?;
    protocol::parse_request(text.trim_end())
}

/// The state of a client to be written `response`.
fn writing(response: Response, limits: &Limits, now: Instant) -> State {
    State::Writing {
        out: line(response),
        at: 0,
        deadline: now + limits.deadline,
        last: now + ANSWER_TIME,
        then: None,
    }
}

/// Writes what the client's socket takes now; whether the client stays (more to write).
fn write_out(mut stream: &UnixStream, state: &mut State, limits: &Limits) -> bool {
    let State::Writing {
        out,
        at,
        deadline,
        last,
        ..
    } = state
    else {
        return true;
    };
    while *at < out.len() {
        match stream.write(&out[*at..]) {
            Ok(0) => return false,
            Ok(n) => {
                *at += n;
                *deadline = (Instant::now() + limits.deadline).min(*last);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!("control socket client: writing the answer: {e}");
                return false;
            }
        }
    }
    false
}

/// `response` as one line of the protocol.
fn line(response: Response) -> Vec<u8> {
    let mut out = serde_json::to_vec(&ResponseLine {
        version: protocol::VERSION,
        response,
    })
    .unwrap_or_else(|e| {
        format!(
            "{{\"version\":{},\"response\":\"error\",\"message\":\"answer not encoded: {e}\"}}",
            protocol::VERSION
        )
        .into_bytes()
    });
    out.push(b'\n');
    out
}

fn error(message: impl Into<String>) -> Response {
    Response::Error {
        message: message.into(),
    }
}

/// `d` as a person says it: "2 s", "250 ms".
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead as _, BufReader},
        net::Shutdown,
        path::PathBuf,
        sync::Mutex,
    };

    use super::*;

    /// A listener on a socket of this test's own, and its path (removed when dropped).
    struct Socket(PathBuf);

    impl Socket {
        fn new(tag: &str) -> (Self, UnixListener) {
            let path =
                std::env::temp_dir().join(format!("hp-clients-{tag}-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).unwrap();
            (Self(path), listener)
        }

        fn connect(&self) -> UnixStream {
            let stream = UnixStream::connect(&self.0).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
        }
    }

    impl Drop for Socket {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// An owner that answers every request at once, naming it.
    fn echo(request: Request, answer: Answer) {
        answer.send(Response::Done {
            message: format!("{request:?}"),
        });
    }

    const SHOW_PORTS: &[u8] = b"{\"version\":1,\"request\":\"show_ports\"}\n";

    /// Reads one answer line from `stream`.
    fn answer(stream: &UnixStream) -> String {
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        line
    }

    /// Sends `request` on a new connection; the answer and how long it took.
    fn ask(socket: &Socket, request: &[u8]) -> (String, Duration) {
        let start = Instant::now();
        let mut stream = socket.connect();
        // A client over the cap may be answered (and closed) before its request is
        // written: the write then fails, and the answer is still there to read.
        let _ = stream.write_all(request);
        let line = answer(&stream);
        (line, start.elapsed())
    }

    fn limits(deadline_ms: u64) -> Limits {
        Limits {
            deadline: Duration::from_millis(deadline_ms),
            ..Limits::default()
        }
    }

    #[test]
    fn an_answer_with_a_handover_keeps_the_connection_open_for_its_taker() {
        let (socket, listener) = Socket::new("handover");
        let owner = |_: Request, answer: Answer| {
            let taker = Handover::new(|mut stream: UnixStream| {
                stream.set_nonblocking(false).unwrap();
                stream.write_all(b"stream follows\n").unwrap();
            });
            answer.send_then(
                Response::Done {
                    message: "taken".into(),
                },
                taker,
            );
        };
        let _clients = Clients::serve(listener, Limits::default(), &[], owner).unwrap();
        let mut stream = socket.connect();
        stream.write_all(SHOW_PORTS).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        assert_eq!(
            text,
            "{\"version\":1,\"response\":\"done\",\"message\":\"taken\"}\nstream follows\n"
        );
    }

    #[test]
    fn a_request_goes_to_the_owner_and_its_answer_back() {
        let (socket, listener) = Socket::new("echo");
        let _clients = Clients::serve(listener, Limits::default(), &[], echo).unwrap();
        let (line, _) = ask(&socket, SHOW_PORTS);
        assert_eq!(
            line,
            "{\"version\":1,\"response\":\"done\",\"message\":\"ShowPorts\"}\n"
        );
        // A client that closes its end without a newline has sent its line.
        let mut stream = socket.connect();
        stream
            .write_all(&SHOW_PORTS[..SHOW_PORTS.len() - 1])
            .unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        assert!(answer(&stream).contains("ShowPorts"));
    }

    #[test]
    fn idle_and_trickling_clients_delay_no_other_client() {
        let (socket, listener) = Socket::new("slow");
        let _clients = Clients::serve(listener, Limits::default(), &[], echo).unwrap();
        let idle: Vec<UnixStream> = (0..40).map(|_| socket.connect()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let tricklers: Vec<_> = (0..5)
            .map(|_| {
                let mut stream = socket.connect();
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    for &byte in SHOW_PORTS {
                        if stop.load(Ordering::Relaxed) || stream.write_all(&[byte]).is_err() {
                            return;
                        }
                        thread::sleep(Duration::from_millis(150));
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(300));
        for _ in 0..5 {
            let (line, took) = ask(&socket, SHOW_PORTS);
            assert!(line.contains("ShowPorts"), "{line}");
            // Served at once; the margin is for a loaded machine, far below the 2 s
            // the stalled clients may take.
            assert!(took < Duration::from_millis(800), "took {took:?}");
        }
        stop.store(true, Ordering::Relaxed);
        for t in tricklers {
            t.join().unwrap();
        }
        drop(idle);
    }

    #[test]
    fn a_client_without_its_line_by_the_deadline_is_told_so() {
        let (socket, listener) = Socket::new("late");
        let _clients = Clients::serve(listener, limits(200), &[], echo).unwrap();
        let start = Instant::now();
        let silent = socket.connect();
        let mut partial = socket.connect();
        partial.write_all(b"{\"version\":1").unwrap();
        assert_eq!(
            answer(&silent),
            "{\"version\":1,\"response\":\"error\",\"message\":\"no request within 200 ms\"}\n"
        );
        assert!(answer(&partial).contains("request line not complete within 200 ms"));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // Then closed.
        assert_eq!(answer(&silent), "");
        // With the default deadline, the message says seconds.
        assert_eq!(seconds(Limits::default().deadline), "2 s");
    }

    #[test]
    fn clients_past_the_cap_are_refused_until_one_is_done() {
        let (socket, listener) = Socket::new("cap");
        let limits = Limits {
            max_clients: 3,
            ..limits(500)
        };
        let _clients = Clients::serve(listener, limits, &[], echo).unwrap();
        let idle: Vec<UnixStream> = (0..3).map(|_| socket.connect()).collect();
        thread::sleep(Duration::from_millis(100));
        let (line, took) = ask(&socket, SHOW_PORTS);
        assert!(
            line.contains("too many clients: 3 are being served"),
            "{line}"
        );
        assert!(
            took < Duration::from_millis(400),
            "refused at once: {took:?}"
        );
        for stream in &idle {
            assert!(answer(stream).contains("no request within 500 ms"));
        }
        drop(idle);
        let (line, _) = ask(&socket, SHOW_PORTS);
        assert!(line.contains("ShowPorts"), "{line}");
    }

    #[test]
    fn malformed_and_oversized_requests_are_answered_without_the_owner() {
        let (socket, listener) = Socket::new("bad");
        let limits = Limits {
            max_request: 100,
            ..Limits::default()
        };
        let owner_asked = Arc::new(AtomicBool::new(false));
        let asked = Arc::clone(&owner_asked);
        let _clients = Clients::serve(listener, limits, &[], move |r, a| {
            asked.store(true, Ordering::Relaxed);
            echo(r, a);
        })
        .unwrap();
        assert!(ask(&socket, b"not json\n").0.contains("malformed request"));
        assert!(ask(&socket, b"\xff\xfe\n").0.contains("not UTF-8"));
        assert!(
            ask(&socket, b"{\"version\":99,\"request\":\"show_ports\"}\n")
                .0
                .contains("version 99")
        );
        let long = [b' '; 200];
        assert!(
            ask(&socket, &long)
                .0
                .contains("request longer than 100 bytes")
        );
        // 99 bytes and the newline: taken.
        let mut fits = vec![b' '; 99 - SHOW_PORTS.len() + 1];
        fits.extend_from_slice(SHOW_PORTS);
        assert_eq!(fits.len(), 100);
        assert!(ask(&socket, &fits).0.contains("ShowPorts"));
        assert!(owner_asked.load(Ordering::Relaxed));
    }

    #[test]
    fn a_client_that_never_reads_its_answer_holds_up_no_one() {
        let (socket, listener) = Socket::new("full");
        // The answer to port_del is far larger than a socket's buffer.
        let big = "x".repeat(8 << 20);
        let _clients = Clients::serve(listener, limits(300), &[], move |r, a| match r {
            Request::PortDel { .. } => a.send(Response::Done {
                message: big.clone(),
            }),
            r => echo(r, a),
        })
        .unwrap();
        let mut deaf = socket.connect();
        deaf.write_all(b"{\"version\":1,\"request\":\"port_del\",\"name\":\"p0\"}\n")
            .unwrap();
        thread::sleep(Duration::from_millis(100));
        let (line, took) = ask(&socket, SHOW_PORTS);
        assert!(line.contains("ShowPorts"), "{line}");
        assert!(took < Duration::from_millis(800), "took {took:?}");
        // Closed once it has read nothing for the deadline: what it reads then ends
        // before the whole answer.
        thread::sleep(Duration::from_millis(800));
        let mut got = Vec::new();
        let _ = deaf.read_to_end(&mut got);
        assert!(got.len() < (8 << 20), "{} bytes", got.len());
    }

    #[test]
    fn a_slow_owner_holds_up_only_its_own_client() {
        let (socket, listener) = Socket::new("owner");
        // The owner keeps the answers to reload until told to give them.
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&held);
        let _clients = Clients::serve(listener, limits(200), &[], move |r, a| match r {
            Request::Reload => keep.lock().unwrap().push(a),
            r => echo(r, a),
        })
        .unwrap();
        let mut waiting = socket.connect();
        waiting
            .write_all(b"{\"version\":1,\"request\":\"reload\"}\n")
            .unwrap();
        // Past the deadline for requests: the client that sent its line is not cut off.
        thread::sleep(Duration::from_millis(500));
        assert!(ask(&socket, SHOW_PORTS).0.contains("ShowPorts"));
        let answers: Vec<Answer> = held.lock().unwrap().drain(..).collect();
        assert_eq!(answers.len(), 1);
        for a in answers {
            a.send(Response::Done {
                message: "reloaded".into(),
            });
        }
        assert!(answer(&waiting).contains("reloaded"));
    }

    #[test]
    fn an_answer_dropped_unanswered_says_so_and_stopping_closes_the_clients() {
        let (socket, listener) = Socket::new("drop");
        let clients = Clients::serve(listener, Limits::default(), &[], |_, a| drop(a)).unwrap();
        assert!(
            ask(&socket, SHOW_PORTS)
                .0
                .contains("the request was not carried out")
        );
        let waiting = socket.connect();
        let start = Instant::now();
        drop(clients);
        // Closed: at its end (accepted) or reset (still in the listener's backlog).
        let mut line = String::new();
        match BufReader::new(&waiting).read_line(&mut line) {
            Ok(n) => assert_eq!(n, 0, "{line}"),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
