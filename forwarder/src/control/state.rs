//! Run-time ports kept across a restart (`hairpin run --state-dir DIR`).
//!
//! Ports added over the control socket (by an operator, or by `hairpin-cni` for a pod)
//! are not in the configuration file, so a restart would lose them while the
//! interfaces and the pods behind them live on. With a state directory, hairpin keeps
//! the requests that added the run-time ports it has now in `DIR/ports.json`, rewritten
//! (write, then rename) whenever that set changes, and adds them again when it starts;
//! one whose interface is gone by then is dropped with a warning. Stopping leaves the
//! file as it is: it describes the ports the next start should have.
use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::spec::PortSpec;

/// The file's name in the state directory.
pub const FILE: &str = "ports.json";

/// The file's format version.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    ports: Vec<PortSpec>,
}

/// The run-time ports, as their `port add` requests, and where they are kept.
#[derive(Debug)]
pub struct RuntimePorts {
    path: PathBuf,
    ports: BTreeMap<String, PortSpec>,
    dirty: bool,
}

impl RuntimePorts {
    /// The state kept in `dir/ports.json`, empty until [`RuntimePorts::read`] or
    /// [`RuntimePorts::added`] fill it.
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join(FILE),
            ports: BTreeMap::new(),
            dirty: false,
        }
    }

    /// Where the state is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ports the file lists (none when there is no file); an unreadable or
    /// malformed file is an error that names it.
    pub fn read(&self) -> io::Result<Vec<PortSpec>> {
        let path = &self.path;
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        if saved.version != VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: version {}, this hairpin reads version {VERSION}",
                    path.display(),
                    saved.version
                ),
            ));
        }
        Ok(saved.ports)
    }

    /// Port `spec` was added.
    pub fn added(&mut self, spec: PortSpec) {
        self.ports.insert(spec.name.clone(), spec);
        self.dirty = true;
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

    /// Marks the state as changed, so the next [`RuntimePorts::save`] writes it.
    pub fn save_now(&mut self) {
        self.dirty = true;
        if let Err(e) = self.save() {
            tracing::warn!("run-time ports not kept: {e}");
        }
    }

    /// Writes the file if the state changed since it was last written. After an error
    /// the next change tries again.
    pub fn save(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        let saved = Saved {
            version: VERSION,
            ports: self.ports.values().cloned().collect(),
        };
        let text = serde_json::to_vec_pretty(&saved).map_err(io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", tmp.display()));
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(named)?;
        }
        std::fs::write(&tmp, text).map_err(named)?;
        std::fs::rename(&tmp, &self.path).map_err(named)
    }
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

    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hp-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn ports_survive_a_reload_of_the_file_and_removed_ones_leave_it() {
        let dir = dir("keep");
        let mut state = RuntimePorts::new(&dir);
        assert!(state.read().expect("no file yet").is_empty());
        state.added(spec("hpa", 10));
        state.added(spec("hpb", 20));
        state.save().expect("written");
        let restore = RuntimePorts::new(&dir).read().expect("read back");
        assert_eq!(restore, [spec("hpa", 10), spec("hpb", 20)]);

        state.retain(["hpb", "p0"]);
        state.save().expect("written");
        let restore = RuntimePorts::new(&dir).read().expect("read back");
        assert_eq!(restore, [spec("hpb", 20)]);
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_it() {
        let dir = dir("bad");
        std::fs::create_dir_all(&dir).expect("made");
        std::fs::write(dir.join(FILE), b"{\"version\":1,\"ports\":[{\"nam\":1}]}")
            .expect("written");
        let e = RuntimePorts::new(&dir).read().expect_err("malformed");
        assert!(e.to_string().contains("ports.json"), "{e}");
        std::fs::write(dir.join(FILE), b"{\"version\":9,\"ports\":[]}").expect("written");
        let e = RuntimePorts::new(&dir).read().expect_err("newer");
        assert!(e.to_string().contains("version 9"), "{e}");
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }
}
