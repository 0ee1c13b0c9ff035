//! Run-time ports and mirrors kept across a restart (`hairpin run --state-dir DIR`).
//!
//! Ports added over the control socket (by an operator, or by `hairpin-cni` for a pod)
//! are not in the configuration file, so a restart would lose them while the
//! interfaces and the pods behind them live on. With a state directory, hairpin keeps
//! the requests that added the run-time ports it has now in `DIR/ports.json` and adds
//! them again when it starts; one whose interface is gone by then is dropped with a
//! warning. Port mirrors added at run time (`hairpin mirror add`) are kept there too
//! (`mirrors`, absent while there are none) and added again once the ports are back;
//! one that names a port that did not come back is dropped with a warning. Stopping
//! leaves the file as it is: it describes the ports the next start should have.
//!
//! What keeps that file whole:
//! - **One owner.** [`RuntimePorts::open`] takes an exclusive `flock` on `DIR/`[`LOCK`]
//!   and holds it as long as the state lives (the process's life, for `hairpin run`).
//!   A second hairpin on the same directory is refused at start
//!   ([`StateError::InUse`]), before it attaches anything or touches the file.
//! - **Whole writes.** The file is written to `ports.json.tmp`, synced, and renamed over
//!   `ports.json`, then the directory is synced: a crash or a full disk leaves the old
//!   file or the new one, never a mix.
//! - **Never overwritten unread.** A file that cannot be read as this state (truncated,
//!   garbage, another format version, an I/O error) is moved aside to
//!   `ports.json.corrupt-<unix seconds>`, and an error log line names both; its ports are
//!   not restored, and the copy is left for an operator. When it cannot be moved aside
//!   either, the start is refused ([`StateError::Unreadable`]).
//! - **Saved before done.** A `port add` or `port del` (a `mirror add` or `mirror del`)
//!   is saved first
//!   ([`RuntimePorts::save_added`], [`RuntimePorts::save_removed`]) and carried out
//!   after: a request whose state cannot be saved fails with the reason and changes
//!   nothing; one the bridge then refuses takes its saved change back
//!   ([`RuntimePorts::undo`]). Changes the bridge makes by itself (a run-time port whose
//!   interface vanished) are saved after the fact ([`RuntimePorts::retain`],
//!   [`RuntimePorts::save`]); a failure there is logged, and the next change writes the
//!   whole state again.
use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::spec::{MirrorSpec, PortSpec};

/// The file's name in the state directory.
pub const FILE: &str = "ports.json";

/// The lock file's name in the state directory.
pub const LOCK: &str = "hairpin.lock";

/// The file's format version.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    ports: Vec<PortSpec>,
    /// Files written before mirrors have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mirrors: Vec<MirrorSpec>,
}

/// An error opening the state directory: hairpin does not start.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process holds the directory's lock.
    #[error(
        "{0}: another hairpin keeps its run-time ports in this state directory; stop it, \
         or give this one another --state-dir"
    )]
    InUse(PathBuf),
    /// The directory or its lock file could not be made or locked.
    #[error("{path}: {action}")]
    Dir {
        /// The directory or file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The state file cannot be read, and could not be moved aside.
    #[error(
        "{path}: unreadable ({reason}), and it could not be moved aside to {aside}; \
         move it away (its ports are then not restored) or repair it"
    )]
    Unreadable {
        /// The state file.
        path: PathBuf,
        /// Why it cannot be read.
        reason: String,
        /// Where it was to go.
        aside: PathBuf,
        /// Why the move failed.
        #[source]
        source: io::Error,
    },
}

/// The run-time ports, as their `port add` requests; where they are kept, and the
/// lock on that place.
#[derive(Debug)]
pub struct RuntimePorts {
    path: PathBuf,
    ports: BTreeMap<String, PortSpec>,
    /// The run-time mirrors, in the order they were added.
    mirrors: Vec<MirrorSpec>,
    dirty: bool,
    /// Holds the directory's `flock` while the state lives.
    _lock: File,
}

/// The run-time mirrors as they were before [`RuntimePorts::save_mirrors`], to take
/// back with [`RuntimePorts::undo_mirrors`] when the request then fails.
#[derive(Debug)]
#[must_use = "a change whose request fails is taken back with RuntimePorts::undo_mirrors"]
pub struct MirrorsUndo(Option<Vec<MirrorSpec>>);

/// A change saved ahead of the request that makes it, to take back with
/// [`RuntimePorts::undo`] when the request then fails.
#[derive(Debug)]
#[must_use = "a change whose request fails is taken back with RuntimePorts::undo"]
pub struct Undo {
    name: String,
    /// The port's entry before the change.
    before: Option<PortSpec>,
    /// Whether the change changed anything (nothing to take back otherwise).
    changed: bool,
}

impl RuntimePorts {
    /// Opens the state kept in `dir` (made if missing) and locks it for this process:
    /// empty until [`RuntimePorts::load`] reads the file. Refused while another
    /// process holds the lock.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let failed = |path: &Path, action| {
            let path = path.to_owned();
            move |source| StateError::Dir {
                path,
                action,
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(failed(dir, "making the state directory"))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            // A read-only directory that has its lock file already can still be
            // locked (flock needs no write access); its saves then fail one by one.
            .or_else(|e| File::open(&lock_path).map_err(|_| e))
            .map_err(failed(&lock_path, "opening the state directory's lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::InUse(dir.to_owned()));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(failed(&lock_path, "locking the state directory")(e));
            }
        }
        Ok(Self {
            path: dir.join(FILE),
            ports: BTreeMap::new(),
            mirrors: Vec::new(),
            dirty: false,
            _lock: lock,
        })
    }

    /// Where the state is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file into the state and returns the ports it lists (none when there
    /// is no file). A file that cannot be read is moved aside, never overwritten: its
    /// new name is logged as an error, and the state starts empty. Refused only when
    /// that move fails too.
    pub fn load(&mut self) -> Result<Vec<PortSpec>, StateError> {
        let (specs, mirrors) = match self.read() {
            Ok(read) => read,
            Err(reason) => {
                let aside = self
                    .set_aside()
                    .map_err(|(aside, source)| StateError::Unreadable {
                        path: self.path.clone(),
                        reason: reason.clone(),
                        aside,
                        source,
                    })?;
                tracing::error!(
                    "{}: unreadable ({reason}); moved aside to {}, its run-time ports are not \
                     restored",
                    self.path.display(),
                    aside.display()
                );
                (Vec::new(), Vec::new())
            }
        };
        self.mirrors = mirrors;
        self.ports = specs
            .iter()
            .map(|spec| (spec.name.clone(), spec.clone()))
            .collect();
        self.dirty = false;
        Ok(specs)
    }

    /// The ports and mirrors the file lists (none when there is no file), or why it
    /// cannot be read.
    fn read(&self) -> Result<(Vec<PortSpec>, Vec<MirrorSpec>), String> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(e.to_string()),
        };
        let saved: OnDisk = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if saved.version != VERSION {
            return Err(format!(
                "version {}, this hairpin reads version {VERSION}",
                saved.version
            ));
        }
        Ok((saved.ports, saved.mirrors))
    }

    /// The run-time mirrors [`RuntimePorts::load`] read (to add again once the ports
    /// are back), or as saved since.
    pub fn mirrors(&self) -> &[MirrorSpec] {
        &self.mirrors
    }

    /// Saves the state with `mirrors` as its run-time mirrors, ahead of the `mirror add`
    /// or `mirror del` that makes them so. On error the state is as it was, in memory
    /// and on disk, and the request must not be carried out.
    pub fn save_mirrors(&mut self, mirrors: Vec<MirrorSpec>) -> io::Result<MirrorsUndo> {
        if mirrors == self.mirrors {
            return Ok(MirrorsUndo(None));
        }
        let before = std::mem::replace(&mut self.mirrors, mirrors);
        let pending = self.dirty;
        self.dirty = true;
        match self.save() {
            Ok(()) => Ok(MirrorsUndo(Some(before))),
            Err(e) => {
                self.mirrors = before;
                self.dirty = pending;
                Err(e)
            }
        }
    }

    /// Takes back mirrors saved ahead of a request that then failed, and saves that (a
    /// failure is logged, as [`RuntimePorts::undo`]'s).
    pub fn undo_mirrors(&mut self, undo: MirrorsUndo) {
        let Some(before) = undo.0 else {
            return;
        };
        self.mirrors = before;
        self.dirty = true;
        if let Err(e) = self.save() {
            tracing::error!("run-time mirrors not kept: {e}");
        }
    }

    /// Keeps the bridge's run-time mirrors, `runtime` (a mirror removed, or taken over
    /// by the configuration file, leaves the state).
    pub fn follow_mirrors<'a>(&mut self, runtime: impl IntoIterator<Item = &'a MirrorSpec>) {
        let runtime: Vec<MirrorSpec> = runtime.into_iter().cloned().collect();
        if runtime != self.mirrors {
            self.mirrors = runtime;
            self.dirty = true;
        }
    }

    /// Renames the file to a free `ports.json.corrupt-<unix seconds>[.N]`; returns the
    /// new name, or the one tried and why it failed.
    fn set_aside(&self) -> Result<PathBuf, (PathBuf, io::Error)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let base = format!("{FILE}.corrupt-{now}");
        let mut aside = self.path.with_file_name(&base);
        // The lock keeps other hairpins out, so a name found free stays free.
        for n in 1.. {
            if std::fs::symlink_metadata(&aside).is_err() {
                break;
            }
            aside = self.path.with_file_name(format!("{base}.{n}"));
        }
        match std::fs::rename(&self.path, &aside) {
            Ok(()) => Ok(aside),
            Err(e) => Err((aside, e)),
        }
    }

    /// Saves the state with `spec` in it, ahead of attaching its port. On error the
    /// state is as it was, in memory and on disk, and the port must not be attached.
    pub fn save_added(&mut self, spec: PortSpec) -> io::Result<Undo> {
        let name = spec.name.clone();
        let before = self.ports.insert(name.clone(), spec);
        self.save_change(Undo {
            name,
            before,
            changed: true,
        })
    }

    /// Saves the state without port `name`, ahead of removing it (nothing is written
    /// when the state has no such port: a port of the configuration file). On error the
    /// state is as it was, and the port must not be removed.
    pub fn save_removed(&mut self, name: &str) -> io::Result<Undo> {
        let before = self.ports.remove(name);
        let changed = before.is_some();
        let undo = Undo {
            name: name.to_owned(),
            before,
            changed,
        };
        if !changed {
            return Ok(undo);
        }
        self.save_change(undo)
    }

    /// Writes the state changed as `undo` says; on error takes the change back.
    fn save_change(&mut self, undo: Undo) -> io::Result<Undo> {
        let pending = self.dirty;
        self.dirty = true;
        match self.save() {
            Ok(()) => Ok(undo),
            Err(e) => {
                self.put_back(undo);
                self.dirty = pending;
                Err(e)
            }
        }
    }

    fn put_back(&mut self, undo: Undo) {
        match undo.before {
            Some(spec) => self.ports.insert(undo.name, spec),
            None => self.ports.remove(&undo.name),
        };
    }

    /// Takes back a change saved ahead of a request that then failed, and saves that.
    /// A failure is logged as an error: the file then names a port the bridge does not
    /// have (or lacks one it has) until the next change is saved.
    pub fn undo(&mut self, undo: Undo) {
        if !undo.changed {
            return;
        }
        self.put_back(undo);
        self.dirty = true;
        if let Err(e) = self.save() {
            tracing::error!("run-time ports not kept: {e}");
        }
    }

    /// Keeps only the ports named in `runtime`: the run-time ports the bridge has now
    /// (a port removed, forgotten with its interface, or adopted by the configuration
    /// file leaves the state).
    pub fn retain<'a>(&mut self, runtime: impl IntoIterator<Item = &'a str>) {
        let runtime: Vec<&str> = runtime.into_iter().collect();
        let before = self.ports.len();
        self.ports
            .retain(|name, _| runtime.contains(&name.as_str()));
        self.dirty |= self.ports.len() != before;
    }

    /// Writes the file if the state changed since it was last written. After an error
    /// the file is as it was, and the next change tries again.
    pub fn save(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        let saved = OnDisk {
            version: VERSION,
            ports: self.ports.values().cloned().collect(),
            mirrors: self.mirrors.clone(),
        };
        let text = serde_json::to_vec_pretty(&saved).map_err(io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        let written = File::create(&tmp)
            .and_then(|mut file| {
                file.write_all(&text)?;
                file.sync_all()
            })
            .map_err(named(&tmp))
            .and_then(|()| std::fs::rename(&tmp, &self.path).map_err(named(&self.path)));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // The rename itself lasts once the directory is synced.
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(named(dir))?;
        }
        Ok(())
    }
}

/// Puts `path` in front of an error's message.
fn named(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, vlan: u32) -> PortSpec {
        PortSpec {
            name: name.into(),
            vlan: Some(vlan),
            allow: vec!["02:00:00:00:00:01".into()],
            ..PortSpec::default()
        }
    }

    /// A fresh directory of this test's own, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("hp-state-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }

        /// The names of its files other than the lock, sorted.
        fn files(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .expect("listed")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n != LOCK)
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
    fn ports_survive_a_reload_of_the_file_and_removed_ones_leave_it() {
        let dir = Dir::new("keep");
        let mut state = RuntimePorts::open(&dir.0).expect("opened");
        assert!(state.load().expect("no file yet").is_empty());
        let _ = state.save_added(spec("hpa", 10)).expect("written");
        let _ = state.save_added(spec("hpb", 20)).expect("written");
        drop(state);
        let mut state = RuntimePorts::open(&dir.0).expect("opened again");
        assert_eq!(
            state.load().expect("read back"),
            [spec("hpa", 10), spec("hpb", 20)]
        );

        state.retain(["hpb", "p0"]);
        state.save().expect("written");
        drop(state);
        let mut state = RuntimePorts::open(&dir.0).expect("opened again");
        assert_eq!(state.load().expect("read back"), [spec("hpb", 20)]);
        assert_eq!(dir.files(), [FILE], "no temporary file left");
    }

    #[test]
    fn an_unreadable_file_is_moved_aside_and_never_overwritten() {
        let dir = Dir::new("bad");
        std::fs::create_dir_all(&dir.0).expect("made");
        for (i, bad) in [
            &b"{\"version\":1,\"ports\":[{\"name\":\"hpa\",\"vl"[..],
            b"\x00\xff garbage",
            b"{\"version\":9,\"ports\":[]}",
        ]
        .into_iter()
        .enumerate()
        {
            std::fs::write(dir.0.join(FILE), bad).expect("written");
            let mut state = RuntimePorts::open(&dir.0).expect("opened");
            assert!(state.load().expect("moved aside").is_empty(), "{i}");
            let aside: Vec<String> = dir
                .files()
                .into_iter()
                .filter(|n| n.starts_with(&format!("{FILE}.corrupt-")))
                .collect();
            assert_eq!(
                aside.len(),
                i + 1,
                "one copy per bad file, none lost: {aside:?}"
            );
            // The next change writes a new file; the copy keeps the bad bytes.
            let _ = state.save_added(spec("hpb", 20)).expect("written");
            let copies: Vec<Vec<u8>> = aside
                .iter()
                .map(|n| std::fs::read(dir.0.join(n)).expect("kept"))
                .collect();
            assert!(
                copies.iter().any(|c| c == bad),
                "{i}: the bad bytes are kept"
            );
            drop(state);
            std::fs::remove_file(dir.0.join(FILE)).expect("removed");
        }
    }

    #[test]
    fn a_directory_named_like_the_file_is_moved_aside_too() {
        let dir = Dir::new("dirfile");
        std::fs::create_dir_all(dir.0.join(FILE)).expect("made");
        let mut state = RuntimePorts::open(&dir.0).expect("opened");
        assert!(state.load().expect("moved aside").is_empty());
        let files = dir.files();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(
            files[0].starts_with(&format!("{FILE}.corrupt-")),
            "{files:?}"
        );
    }

    #[test]
    fn a_state_directory_that_cannot_be_made_refuses_the_start() {
        let dir = Dir::new("notadir");
        std::fs::write(&dir.0, b"a file where the directory goes").expect("written");
        let e = RuntimePorts::open(&dir.0).expect_err("not a directory");
        assert!(matches!(e, StateError::Dir { .. }), "{e}");
        assert!(e.to_string().contains(&dir.0.display().to_string()), "{e}");
        let _ = std::fs::remove_file(&dir.0);
    }

    #[test]
    fn a_second_holder_of_the_directory_is_refused() {
        let dir = Dir::new("lock");
        let first = RuntimePorts::open(&dir.0).expect("opened");
        let e = RuntimePorts::open(&dir.0).expect_err("held");
        assert!(matches!(e, StateError::InUse(_)), "{e}");
        assert!(e.to_string().contains("another hairpin"), "{e}");
        drop(first);
        RuntimePorts::open(&dir.0).expect("free again once the first is gone");
    }

    #[test]
    fn a_change_that_cannot_be_saved_fails_and_changes_nothing() {
        let dir = Dir::new("nosave");
        let mut state = RuntimePorts::open(&dir.0).expect("opened");
        state.load().expect("no file yet");
        let _ = state.save_added(spec("hpa", 10)).expect("written");
        // A directory where the temporary file goes: every write fails, as root too.
        let tmp = dir.0.join(FILE).with_extension("json.tmp");
        std::fs::create_dir(&tmp).expect("made");
        let before = std::fs::read(dir.0.join(FILE)).expect("read");

        let e = state.save_added(spec("hpb", 20)).expect_err("not saved");
        assert!(
            e.to_string().contains("ports.json.tmp"),
            "the reason names the file: {e}"
        );
        let e = state.save_removed("hpa").expect_err("not saved");
        assert!(e.to_string().contains("ports.json.tmp"), "{e}");
        assert_eq!(std::fs::read(dir.0.join(FILE)).expect("read"), before);
        // Nothing to save for a port the state does not have (a configuration port).
        let _ = state.save_removed("p0").expect("nothing to write");

        std::fs::remove_dir(&tmp).expect("removed");
        // The state in memory is as before the failed requests: the next save writes
        // hpa alone.
        state.retain(["hpa"]);
        let _ = state.save_added(spec("hpc", 30)).expect("written");
        drop(state);
        let mut state = RuntimePorts::open(&dir.0).expect("opened again");
        assert_eq!(
            state.load().expect("read"),
            [spec("hpa", 10), spec("hpc", 30)]
        );
    }

    fn mirror(name: &str, from: &str, to: &str) -> MirrorSpec {
        MirrorSpec {
            name: name.into(),
            from: vec![from.into()],
            direction: crate::control::protocol::Direction::In,
            to: to.into(),
        }
    }

    #[test]
    fn mirrors_are_kept_beside_the_ports_and_old_files_have_none() {
        let dir = Dir::new("mirrors");
        std::fs::create_dir_all(&dir.0).expect("made");
        // A file from before mirrors.
        std::fs::write(dir.0.join(FILE), br#"{"version":1,"ports":[]}"#).expect("written");
        let mut state = RuntimePorts::open(&dir.0).expect("opened");
        assert!(state.load().expect("read").is_empty());
        assert!(state.mirrors().is_empty());
        let _ = state.save_added(spec("hpa", 10)).expect("written");
        // Without mirrors, the file is as before them.
        let text = std::fs::read_to_string(dir.0.join(FILE)).expect("read");
        assert!(!text.contains("mirrors"), "{text}");
        let m1 = mirror("m1", "hpa", "p0");
        let _ = state.save_mirrors(vec![m1.clone()]).expect("written");
        // A failed request takes its change back; one that changes nothing writes
        // nothing.
        let undo = state
            .save_mirrors(vec![m1.clone(), mirror("m2", "hpa", "p1")])
            .expect("written");
        state.undo_mirrors(undo);
        let undo = state
            .save_mirrors(vec![m1.clone()])
            .expect("nothing to write");
        state.undo_mirrors(undo);
        drop(state);
        let mut state = RuntimePorts::open(&dir.0).expect("opened again");
        assert_eq!(state.load().expect("read"), [spec("hpa", 10)]);
        assert_eq!(state.mirrors(), std::slice::from_ref(&m1));
        // The bridge's run-time mirrors are followed.
        state.follow_mirrors(&[]);
        state.save().expect("written");
        drop(state);
        let mut state = RuntimePorts::open(&dir.0).expect("opened again");
        state.load().expect("read");
        assert!(state.mirrors().is_empty());
    }

    #[test]
    fn a_saved_change_whose_request_fails_is_taken_back() {
        let dir = Dir::new("undo");
        let mut state = RuntimePorts::open(&dir.0).expect("opened");
        state.load().expect("no file yet");
        let _ = state.save_added(spec("hpa", 10)).expect("written");
        let undo = state.save_added(spec("hpa", 99)).expect("written");
        state.undo(undo);
        let undo = state.save_removed("hpa").expect("written");
        state.undo(undo);
        let undo = state.save_added(spec("hpb", 20)).expect("written");
        state.undo(undo);
        drop(state);
        let mut state = RuntimePorts::open(&dir.0).expect("opened again");
        assert_eq!(state.load().expect("read"), [spec("hpa", 10)]);
    }
}
