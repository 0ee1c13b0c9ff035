//! What hairpin needs to know of a network interface: its index, MAC and RX queues.
//!
//! Everything is read through ioctls on a socket of the calling thread's network
//! namespace (not from `/sys`, which shows the namespace it was mounted in), so the
//! answers are right also on a thread that entered another namespace with `setns`.
use std::{ffi::CString, fs, io, os::fd::AsRawFd as _};

use crate::{sys, wire::Mac};

/// An error looking an interface up.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The name is not a valid interface name.
    #[error("{name:?} is not a valid interface name (1 to 15 bytes, no '/', ':' or whitespace)")]
    BadName {
        /// The name given.
        name: String,
    },
    /// No interface by that name in this network namespace.
    #[error("interface {name}: no such device in this network namespace")]
    NoSuchDevice {
        /// The name given.
        name: String,
    },
    /// An ioctl on the interface failed.
    #[error("interface {name}: reading its {what}")]
    Ioctl {
        /// The interface.
        name: String,
        /// What was being read.
        what: &'static str,
        /// The error from the kernel.
        #[source]
        source: io::Error,
    },
}

/// A network interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its index.
    pub ifindex: u32,
    /// Its MAC address.
    pub mac: Mac,
    /// How many RX queues it has (the ones XDP sees as `rx_queue_index`).
    pub rx_queues: u32,
}

impl Interface {
    /// Looks `name` up in the calling thread's network namespace.
    pub fn lookup(name: &str) -> Result<Self, PortError> {
        let bad = || PortError::BadName {
            name: name.to_owned(),
        };
        if name.is_empty()
            || name.len() >= libc::IFNAMSIZ
            || name.contains(['/', ':'])
            || name.contains(char::is_whitespace)
        {
            return Err(bad());
        }
        let cname = CString::new(name).map_err(|_| bad())?;
        let ifindex = sys::if_index(&cname);
        if ifindex == 0 {
            return Err(PortError::NoSuchDevice {
                name: name.to_owned(),
            });
        }
        let ioctl_err = |what, source| PortError::Ioctl {
            name: name.to_owned(),
            what,
            source,
        };
        let sock = sys::control_socket().map_err(|e| ioctl_err("control socket", e))?;
        let mac = sys::hardware_address(sock.as_raw_fd(), name)
            .map_err(|e| ioctl_err("MAC address", e))?;
        let rx_queues = match sys::ethtool_rx_channels(sock.as_raw_fd(), name) {
            Ok(n) if n > 0 => n,
            // Drivers without ethtool channels (macvlan, tun, ...) keep their queues in
            // sysfs; trust it only when it describes this same device.
            _ => sysfs_rx_queues(name, ifindex).unwrap_or(1),
        };
        Ok(Self {
            name: name.to_owned(),
            ifindex,
            mac: Mac(mac),
            rx_queues,
        })
    }
}

fn sysfs_rx_queues(name: &str, ifindex: u32) -> Option<u32> {
    let dir = format!("/sys/class/net/{name}");
    let index: u32 = fs::read_to_string(format!("{dir}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if index != ifindex {
        return None;
    }
    let count = fs::read_dir(format!("{dir}/queues"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    u32::try_from(count).ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_rejects_bad_names_and_missing_devices() {
        assert!(matches!(
            Interface::lookup(""),
            Err(PortError::BadName { .. })
        ));
        assert!(matches!(
            Interface::lookup("a-name-longer-than-15"),
            Err(PortError::BadName { .. })
        ));
        assert!(matches!(
            Interface::lookup("hp-nonexistent0"),
            Err(PortError::NoSuchDevice { .. })
        ));
        let lo = Interface::lookup("lo").unwrap();
        assert_eq!(lo.ifindex, 1);
        assert!(lo.rx_queues >= 1);
    }
}
