//! hairpin as a service: the control thread that owns the [`Bridge`], and the Unix
//! socket operators and tools talk to it through.
//!
//! [`Service::spawn`] binds the control socket, starts a thread in the caller's network
//! namespace, and starts the bridge on it. That thread then does everything the control
//! plane does, one thing at a time: it waits in `poll` for the kernel's link and address
//! notifications or a call in its inbox, and ticks a few times a second (MAC table
//! aging). The workers never wait for it, and it never waits for a client.
//!
//! Calls come from the [`Service`] handle and its [`Caller`]s (the signal handler's
//! thread, the metrics endpoint, an in-process test) and from the control socket's
//! clients. Those are served by a thread of their own ([`super::clients`], started once
//! the bridge is up): it reads each client's request line, with a deadline (2 s) and a
//! size cap (64 KiB), for at most 64 clients at once, puts each request in the control
//! thread's inbox with a wake, and writes the answer back. No client can hold up
//! another, the kernel's notifications, aging, the watchdog (fed from answers to
//! `show ports`) or a stop by more than the time the control thread takes to carry out
//! the requests already queued.
//!
//! The socket is created with its final mode, `0600` (root only): it is bound inside a
//! fresh directory of mode `0700` next to its path, made `0600` there, and only then
//! linked to its path (`link(2)`, which refuses to replace a file), so no one else can
//! connect to it at any moment whatever the umask; the directory is removed again. The
//! socket is removed on exit; a second instance on the same path is refused while the
//! first answers there. One request per connection, one JSON line each way
//! ([`super::protocol`]).
use std::{
    io::{self, BufRead as _, BufReader, Write as _},
    os::{
        fd::AsRawFd as _,
        unix::{
            fs::{DirBuilderExt as _, PermissionsExt as _},
            net::{UnixListener, UnixStream},
        },
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use super::{
    bridge::{Bridge, BridgeError},
    clients::{Answer, Clients, Limits},
    config::BridgeConfig,
    config_file,
    drop_log::DropLog,
    protocol::{self, Request, Response, ResponseLine, Stats},
    spec::PortSpec,
    state::{RuntimePorts, StateError},
};
use crate::{switch::PortId, sys::EventFd, wire::Mac};

/// Moves the calling thread off the workers' cores ([`crate::sys::keep_off`]).
pub use crate::sys::keep_off;

/// Where `hairpin run` serves and the client commands connect by default.
pub const DEFAULT_SOCKET: &str = "/run/hairpin/hairpin.sock";

/// How often the bridge ticks (MAC table aging) when nothing else wakes it.
const TICK: Duration = Duration::from_millis(200);

/// An error starting the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Another instance answers on the socket.
    #[error(
        "{0}: another hairpin is serving this control socket; stop it, or give this one --socket PATH"
    )]
    InUse(PathBuf),
    /// The socket could not be made.
    #[error("{path}: creating the control socket")]
    Socket {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The bridge did not start.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// The control thread could not be started.
    #[error("starting the control thread")]
    Thread(#[source] io::Error),
    /// The state directory cannot be used (another hairpin holds it, say).
    #[error(transparent)]
    State(#[from] StateError),
}

/// Where the service's settings come from besides the bridge's.
#[derive(Clone, Debug, Default)]
pub struct ServiceOptions {
    /// The control socket to serve (none: in-process use only).
    pub socket: Option<PathBuf>,
    /// The configuration file `reload` re-reads.
    pub config_file: Option<PathBuf>,
    /// Where the run-time ports and mirrors are kept across a restart ([`super::state`]): locked
    /// for this service, so a second one on it is refused at start.
    pub state_dir: Option<PathBuf>,
}

/// A call to the control thread.
// One per client request, moved once through a channel: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Call {
    Request(Request, ReplyTo),
    Stop,
}

/// Where the answer to a call goes.
#[derive(Debug)]
enum ReplyTo {
    /// A [`Caller`] waiting for it.
    Caller(mpsc::Sender<Response>),
    /// A client of the control socket, through its thread.
    Client(Answer),
}

impl ReplyTo {
    fn send(self, response: Response) {
        match self {
            Self::Caller(to) => {
                let _ = to.send(response);
            }
            Self::Client(answer) => answer.send(response),
        }
    }
}

/// The handle on a running service.
#[derive(Debug)]
pub struct Service {
    calls: mpsc::Sender<Call>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<(Stats, usize)>>,
    cores: Vec<usize>,
    /// The control socket's clients' thread (none: in-process use only).
    clients: Option<Clients>,
}

/// Asks a running service from any thread; answers "stopped" once it has.
#[derive(Clone, Debug)]
pub struct Caller {
    calls: mpsc::Sender<Call>,
    wake: Arc<EventFd>,
}

impl Caller {
    /// Asks the control thread, as a client of the socket would, and waits for the answer.
    pub fn call(&self, request: Request) -> Response {
        let (reply_to, reply) = mpsc::channel();
        self.submit(request, ReplyTo::Caller(reply_to));
        reply
            .recv()
            .unwrap_or_else(|_| error("the control thread has stopped"))
    }

    /// Puts `request` in the control thread's inbox and wakes it; returns at once. The
    /// answer goes to `reply_to`.
    fn submit(&self, request: Request, reply_to: ReplyTo) {
        match self.calls.send(Call::Request(request, reply_to)) {
            Ok(()) => self.wake.notify(),
            Err(mpsc::SendError(call)) => {
                if let Call::Request(_, reply_to) = call {
                    reply_to.send(error("the control thread has stopped"));
                }
            }
        }
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Request(r, _) => write!(f, "Request({r:?})"),
            Self::Stop => f.write_str("Stop"),
        }
    }
}

impl Service {
    /// Binds the control socket, then starts the bridge on a control thread in the
    /// calling thread's network namespace. Returns once every port is attached.
    pub fn spawn(config: BridgeConfig, options: ServiceOptions) -> Result<Self, ServiceError> {
        // Bad input is refused before the socket is taken.
        super::bridge::check_config(&config)?;
        // The state directory is locked and its file read before anything is attached:
        // a second hairpin on it is refused here, and an unreadable file is set aside.
        let state = match options.state_dir.as_deref() {
            Some(dir) => {
                let mut state = RuntimePorts::open(dir)?;
                let specs = state.load()?;
                Some((state, specs))
            }
            None => None,
        };
        let (calls, inbox) = mpsc::channel();
        let wake = Arc::new(EventFd::new().map_err(ServiceError::Thread)?);
        let (started_tx, started) = mpsc::channel();
        let thread_wake = Arc::clone(&wake);
        let socket_path = options.socket.clone();
        let listener = options.socket.as_deref().map(bind).transpose()?;
        let thread = thread::Builder::new()
            .name("hairpin-control".into())
            .spawn(move || {
                let (bridge, state) = match Bridge::start(config) {
                    Ok(mut bridge) => {
                        keep_off(bridge.cores());
                        // Ready means the run-time ports are back too.
                        let state = state.map(|(state, specs)| restore(&mut bridge, state, specs));
                        let _ = started_tx.send(Ok(bridge.cores().to_vec()));
                        (bridge, state)
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        remove_socket(socket_path.as_deref());
                        return (Stats::default(), 0);
                    }
                };
                let mut control = Control {
                    bridge,
                    inbox,
                    wake: thread_wake,
                    options,
                    drops: DropLog::default(),
                    state,
                };
                control.run();
                remove_socket(control.options.socket.as_deref());
                control.bridge.stop()
            })
            .map_err(ServiceError::Thread)?;
        match started.recv() {
            Ok(Ok(cores)) => {
                let mut service = Self {
                    calls,
                    wake,
                    thread: Some(thread),
                    cores,
                    clients: None,
                };
                // The socket is served from now on (clients that came meanwhile waited
                // in its backlog); past a failure here, dropping the service stops it.
                if let Some(listener) = listener {
                    let caller = service.caller();
                    let clients = Clients::serve(
                        listener,
                        Limits::default(),
                        &service.cores,
                        move |request, answer| caller.submit(request, ReplyTo::Client(answer)),
                    );
                    service.clients = Some(clients.map_err(ServiceError::Thread)?);
                }
                Ok(service)
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e.into())
            }
            Err(_) => {
                let _ = thread.join();
                Err(ServiceError::Thread(io::Error::other(
                    "the control thread died starting",
                )))
            }
        }
    }

    /// The core each worker runs on.
    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// Asks the control thread, as a client of the socket would.
    pub fn call(&self, request: Request) -> Response {
        self.caller().call(request)
    }

    /// A handle other threads (the metrics server) ask the control thread through.
    pub fn caller(&self) -> Caller {
        Caller {
            calls: self.calls.clone(),
            wake: Arc::clone(&self.wake),
        }
    }

    /// Stops the bridge: every port detached, the workers stopped. Returns the final
    /// counters and how many workers panicked.
    pub fn stop(mut self) -> (Stats, usize) {
        self.shutdown()
    }

    fn shutdown(&mut self) -> (Stats, usize) {
        // No more clients first: the socket's pending ones are closed.
        drop(self.clients.take());
        let _ = self.calls.send(Call::Stop);
        self.wake.notify();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => {
                tracing::error!("the control thread panicked");
                (Stats::default(), 1)
            }
            None => (Stats::default(), 0),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

fn error(message: impl Into<String>) -> Response {
    Response::Error {
        message: message.into(),
    }
}

/// Binds the control socket at `path`, refusing if another instance answers there.
fn bind(path: &Path) -> Result<UnixListener, ServiceError> {
    let err = |source| ServiceError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ServiceError::InUse(path.to_owned()));
        }
        // Left behind by an instance that was killed: nobody answers.
        std::fs::remove_file(path).map_err(err)?;
    }
    bind_private(path)
}

/// Binds a socket at `path` that is `0600` from the moment anyone can reach it: bound
/// as `s` in a fresh `0700` directory beside `path`, made `0600` there, then linked to
/// `path` (refused rather than replacing a file that appeared there meanwhile); the
/// directory goes again on every path.
fn bind_private(path: &Path) -> Result<UnixListener, ServiceError> {
    let err = |source| ServiceError::Socket {
        path: path.to_owned(),
        source,
    };
    /// Tells apart the directories of two services starting at once in one process.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = dir.join(format!(
        ".hairpin-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let inside = private.join("s");
    // Left behind by a killed process that had this process id.
    let _ = std::fs::remove_file(&inside);
    let _ = std::fs::remove_dir(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(err)?;
    let bound = UnixListener::bind(&inside)
        .and_then(|listener| {
            std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o600))?;
            Ok(listener)
        })
        .map_err(err)
        .and_then(|listener| match std::fs::hard_link(&inside, path) {
            Ok(()) => Ok(listener),
            // Another instance bound it since the caller looked.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(ServiceError::InUse(path.to_owned()))
            }
            Err(e) => Err(err(e)),
        });
    let _ = std::fs::remove_file(&inside);
    let _ = std::fs::remove_dir(&private);
    bound
}

fn remove_socket(path: Option<&Path>) {
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
}

/// The control thread's state.
struct Control {
    bridge: Bridge,
    inbox: mpsc::Receiver<Call>,
    wake: Arc<EventFd>,
    options: ServiceOptions,
    drops: DropLog,
    state: Option<RuntimePorts>,
}

/// Checks `spec` and adds its port at run time.
fn add_port(bridge: &mut Bridge, spec: &PortSpec) -> Result<PortId, BridgeError> {
    spec.check()
        .map_err(|e| BridgeError::Refused(e.to_string()))
        .and_then(|config| bridge.add_port(config))
}

/// Adds the run-time ports `specs` read from `state` again; returns the state, which
/// from now on follows the bridge's run-time ports. A port that cannot be added (its
/// interface gone with its pod, say) is dropped with a warning. (A state file hairpin
/// cannot read was moved aside before: [`RuntimePorts::load`].)
fn restore(bridge: &mut Bridge, mut state: RuntimePorts, specs: Vec<PortSpec>) -> RuntimePorts {
    for spec in specs {
        let name = spec.name.clone();
        match add_port(bridge, &spec) {
            Ok(id) => tracing::info!(
                "{name}: run-time port restored from {}, as port {id}",
                state.path().display()
            ),
            Err(e) => tracing::warn!("{name}: run-time port not restored: {e:#}"),
        }
    }
    // Then the run-time mirrors, whose ports are back now.
    for spec in state.mirrors().to_vec() {
        let name = spec.name.clone();
        match bridge.add_mirror(spec) {
            Ok(_) => tracing::info!(
                "mirror {name}: run-time mirror restored from {}",
                state.path().display()
            ),
            Err(e) => tracing::warn!("mirror {name}: run-time mirror not restored: {e:#}"),
        }
    }
    // The file now says what the bridge has: rewritten only when something was dropped.
    state.retain(bridge.runtime_ports());
    state.follow_mirrors(bridge.runtime_mirrors());
    if let Err(e) = state.save() {
        tracing::error!("run-time ports not kept: {e}");
    }
    state
}

impl Control {
    fn run(&mut self) {
        let mut last_tick = Instant::now();
        loop {
            let timeout = TICK.saturating_sub(last_tick.elapsed());
            let mut fds = [
                crate::sys::pollfd(self.bridge.events_fd().as_raw_fd(), libc::POLLIN),
                crate::sys::pollfd(self.wake.raw(), libc::POLLIN),
            ];
            crate::sys::poll(&mut fds, timeout.as_millis() as i32);
            self.wake.drain();
            if fds[0].revents != 0 || last_tick.elapsed() >= TICK {
                self.bridge.tick();
                last_tick = Instant::now();
                if self.drops.due(last_tick) {
                    self.drops.report(&self.bridge.ports(), last_tick);
                }
            }
            while let Ok(call) = self.inbox.try_recv() {
                match call {
                    Call::Request(Request::Capture(request), reply_to) => {
                        self.capture(&request, reply_to);
                    }
                    Call::Request(request, reply_to) => {
                        reply_to.send(self.handle(request));
                    }
                    Call::Stop => return,
                }
            }
            self.keep_state();
        }
    }

    /// Brings the state file up to the bridge's run-time ports (one removed, or
    /// forgotten with its interface, leaves it). Stopping does not come here: the file
    /// keeps the ports for the next start.
    fn keep_state(&mut self) {
        if let Some(state) = &mut self.state {
            state.retain(self.bridge.runtime_ports());
            state.follow_mirrors(self.bridge.runtime_mirrors());
            if let Err(e) = state.save() {
                tracing::error!("run-time ports not kept: {e}");
            }
        }
    }

    /// Carries out one request; a refused one changes nothing.
    fn handle(&mut self, request: Request) -> Response {
        let done = |r: Result<String, BridgeError>| match r {
            Ok(message) => Response::Done { message },
            Err(e) => error(format!("{e:#}")),
        };
        let bridge = &mut self.bridge;
        match request {
            // With a state directory, a change is saved first and made after: one that
            // cannot be saved is refused with the reason and changes nothing; one the
            // bridge refuses takes its saved change back.
            Request::PortAdd(spec) => {
                let undo = match &mut self.state {
                    // A spec the check refuses is refused below, without a write.
                    Some(state) if spec.check().is_ok() => match state.save_added(spec.clone()) {
                        Ok(undo) => Some(undo),
                        Err(e) => {
                            return error(format!(
                                "{}: not attached: the run-time ports cannot be saved: {e}",
                                spec.name
                            ));
                        }
                    },
                    _ => None,
                };
                match add_port(bridge, &spec) {
                    Ok(id) => Response::Done {
                        message: format!("{}: attached as port {id}", spec.name),
                    },
                    Err(e) => {
                        if let (Some(state), Some(undo)) = (&mut self.state, undo) {
                            state.undo(undo);
                        }
                        error(format!("{e:#}"))
                    }
                }
            }
            Request::PortDel { name } => {
                let undo = match self.state.as_mut().map(|s| s.save_removed(&name)) {
                    Some(Err(e)) => {
                        return error(format!(
                            "{name}: not removed: the run-time ports cannot be saved: {e}"
                        ));
                    }
                    Some(Ok(undo)) => Some(undo),
                    None => None,
                };
                let removed = bridge.remove_port(&name);
                if removed.is_err()
                    && let (Some(state), Some(undo)) = (&mut self.state, undo)
                {
                    state.undo(undo);
                }
                done(removed.map(|()| format!("{name}: removed")))
            }
            Request::ShowPorts => Response::Ports {
                ports: bridge.ports(),
            },
            Request::ShowFdb { port, vlan } => match bridge.fdb_entries(port.as_deref(), vlan) {
                Ok(entries) => Response::Fdb { entries },
                Err(e) => error(e.to_string()),
            },
            Request::FdbAdd { port, mac, vlan } => {
                done(parse_mac(&mac).and_then(|mac| bridge.fdb_add(&port, mac, vlan)))
            }
            Request::FdbDel { mac, vlan } => {
                done(parse_mac(&mac).and_then(|mac| bridge.fdb_del(mac, vlan)))
            }
            Request::FdbFlush { port } => done(bridge.fdb_flush(port.as_deref())),
            Request::Reload => done(self.reload()),
            Request::ShowStats => Response::Stats(Box::new(self.bridge.stats())),
            Request::Trace { port, frame } => match bridge.trace(&port, &frame) {
                Ok(report) => Response::Trace(Box::new(report)),
                Err(e) => error(e.to_string()),
            },
            Request::Capture(_) => error("a capture streams over the control socket only"),
            // Saved first and made after, as ports are.
            Request::MirrorAdd(spec) => {
                let mut mirrors: Vec<_> = bridge.runtime_mirrors().cloned().collect();
                mirrors.push(spec.clone());
                // A spec its own check refuses is refused below, without a write.
                let state = self.state.as_mut().filter(|_| spec.check().is_ok());
                let undo = match state.map(|s| s.save_mirrors(mirrors)) {
                    Some(Err(e)) => {
                        return error(format!(
                            "mirror {}: not added: the run-time mirrors cannot be saved: {e}",
                            spec.name
                        ));
                    }
                    Some(Ok(undo)) => Some(undo),
                    None => None,
                };
                let added = bridge.add_mirror(spec);
                if added.is_err()
                    && let (Some(state), Some(undo)) = (&mut self.state, undo)
                {
                    state.undo_mirrors(undo);
                }
                done(added)
            }
            Request::MirrorDel { name } => {
                let mirrors: Vec<_> = bridge
                    .runtime_mirrors()
                    .filter(|m| m.name != name)
                    .cloned()
                    .collect();
                let undo = match self.state.as_mut().map(|s| s.save_mirrors(mirrors)) {
                    Some(Err(e)) => {
                        return error(format!(
                            "mirror {name}: not removed: the run-time mirrors cannot be saved: {e}"
                        ));
                    }
                    Some(Ok(undo)) => Some(undo),
                    None => None,
                };
                let removed = bridge.remove_mirror(&name);
                if removed.is_err()
                    && let (Some(state), Some(undo)) = (&mut self.state, undo)
                {
                    state.undo_mirrors(undo);
                }
                done(removed)
            }
            Request::ShowMirrors => Response::Mirrors {
                mirrors: bridge.mirrors(),
            },
        }
    }

    /// Begins a capture: the capture thread takes the client's connection, answers
    /// `capturing` once the port is tapped, and streams on it ([`super::capture`]);
    /// refused with the reason otherwise.
    fn capture(&mut self, request: &protocol::CaptureRequest, reply_to: ReplyTo) {
        match (self.bridge.capture(request), reply_to) {
            (Ok(handover), ReplyTo::Client(answer)) => answer.hand_over(handover),
            (Ok(_), caller) => {
                caller.send(error("a capture streams over the control socket only"));
            }
            (Err(e), reply_to) => reply_to.send(error(e.to_string())),
        }
    }

    fn reload(&mut self) -> Result<String, BridgeError> {
        let Some(path) = &self.options.config_file else {
            return Err(BridgeError::Refused(
                "hairpin was started without --config: there is no file to reload".into(),
            ));
        };
        let config = config_file::load(path).map_err(|e| BridgeError::Refused(e.to_string()))?;
        let result = self.bridge.reload(config);
        match &result {
            Ok(message) => tracing::info!("{}: {message}", path.display()),
            Err(e) => tracing::warn!("{}: reload refused: {e}", path.display()),
        }
        result
    }
}

fn parse_mac(text: &str) -> Result<Mac, BridgeError> {
    text.parse()
        .map_err(|e: crate::wire::MacParseError| BridgeError::Refused(e.to_string()))
}

/// Sends `request` to the service at `socket` and returns its answer.
pub fn request(socket: &Path, request: &Request) -> io::Result<Response> {
    open(socket, request).map(|(response, _)| response)
}

/// Sends `request` to the service at `socket` and reads its answer line; returns the
/// answer and the connection, still open, for a request whose answer goes on
/// (`hairpin capture`'s stream): the reader holds whatever followed the answer line.
/// The connection has a read timeout of 30 s, for the answer; clear it to wait longer.
pub fn open(socket: &Path, request: &Request) -> io::Result<(Response, BufReader<UnixStream>)> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{}: {e} (is `hairpin run` running, and is this its --socket?)",
                socket.display()
            ),
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(&protocol::RequestLine {
        version: protocol::VERSION,
        request: request.clone(),
    })
    .map_err(io::Error::other)?;
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    let answer: ResponseLine = serde_json::from_str(&answer).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, format!("malformed answer: {e}"))
    })?;
    Ok((answer.response, reader))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt as _;

    use super::*;

    /// A directory of this test's own, removed with what is in it when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Self {
            let path = std::env::temp_dir().join(format!("hp-svc-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir(&path).unwrap();
            Self(path)
        }

        fn entries(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_socket_appears_with_its_final_mode_and_nothing_beside_it() {
        let dir = Dir::new("mode");
        let path = dir.0.join("hairpin.sock");
        let listener = bind(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // The directory it was bound in is gone.
        assert_eq!(dir.entries(), ["hairpin.sock"]);
        // It answers at its path.
        let _client = UnixStream::connect(&path).unwrap();
        assert!(listener.accept().is_ok());

        // A new directory for it is made 0700.
        let deeper = dir.0.join("run").join("hairpin.sock");
        let _other = bind(&deeper).unwrap();
        let mode = std::fs::metadata(deeper.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_served_socket_is_refused_and_a_stale_one_replaced() {
        let dir = Dir::new("again");
        let path = dir.0.join("hairpin.sock");
        let first = bind(&path).unwrap();
        assert!(matches!(bind(&path), Err(ServiceError::InUse(p)) if p == path));
        drop(first);
        // Nobody answers there now: the file is taken over.
        let _second = bind(&path).unwrap();
        let _client = UnixStream::connect(&path).unwrap();
        assert_eq!(dir.entries(), ["hairpin.sock"]);
    }

    #[test]
    fn a_file_that_appears_meanwhile_is_not_replaced() {
        let dir = Dir::new("race");
        let path = dir.0.join("hairpin.sock");
        std::fs::write(&path, "someone else's").unwrap();
        // As if another instance bound it between bind's check and the link.
        assert!(matches!(bind_private(&path), Err(ServiceError::InUse(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's");
        assert_eq!(dir.entries(), ["hairpin.sock"]);
    }
}
