//! The `hairpin` command's own parts, outside the library: its options and
//! subcommands (`args.rs`), the client commands (`client.rs`), `capture`
//! (`capture.rs`), libvirt's qemu hook (`libvirt/`), `run` as a service (`serve.rs`)
//! and `top` (`top.rs`).
pub(crate) mod args;
pub(crate) mod capture;
pub(crate) mod client;
pub(crate) mod libvirt;
pub(crate) mod serve;
pub(crate) mod top;
