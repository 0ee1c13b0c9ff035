//! The control plane: one owner ([`bridge::Bridge`]) for the ports, the XDP program and
//! its maps, the host's addresses, MAC table aging and the kernel's link changes; the
//! service around it ([`service`]) with its control socket ([`protocol`]); a port's
//! settings, one type wherever they are written ([`spec`]); configuration ([`config`],
//! [`config_file`]); preflight checks.
//!
//! The layers depend downwards only: `control` uses `datapath`, `switch` and `wire`;
//! `datapath` uses `switch`; `switch` uses `wire`. Nothing below imports `control`.
pub mod bridge;
pub mod capture;
pub mod clients;
pub mod config;
pub mod config_file;
pub mod departed;
pub mod drop_log;
pub mod metrics;
pub mod netdev;
pub mod netlink;
pub mod port;
pub mod preflight;
pub mod protocol;
pub mod service;
pub mod spec;
pub mod state;
pub mod xdp;
