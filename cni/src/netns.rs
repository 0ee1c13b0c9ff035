//! Work inside a pod's network namespace.
use std::{fs::File, path::Path};

use crate::failure::Failure;

/// The namespace at `path` (`CNI_NETNS`), opened.
pub fn open(path: &Path) -> Result<File, Failure> {
    File::open(path).map_err(|e| Failure::io(format!("opening CNI_NETNS {}", path.display()), e))
}

/// Runs `f` on a thread that has entered the namespace `netns`, and returns its result.
/// Sockets (netlink, ioctl) that `f` opens act in that namespace; the calling thread
/// stays where it is.
pub fn within<T: Send>(
    netns: &File,
    f: impl FnOnce() -> Result<T, Failure> + Send,
) -> Result<T, Failure> {
    hairpin::in_netns(netns, f)
        .map_err(|e| Failure::io("entering the pod's network namespace", e))?
}
