//! The control plane: ports, the XDP program and its maps, preflight checks.
pub mod config;
pub mod config_file;
pub mod port;
pub mod preflight;
pub mod xdp;
