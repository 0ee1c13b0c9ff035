//! hairpin: an IEEE 802.1Qbg edge virtual bridge over AF_XDP.
//!
//! The crate is layered the way a frame travels:
//!
//! - [`control`]: the control plane, with one owner, [`control::bridge::Bridge`]: the
//!   ports as they come and go, the XDP program and its maps ([`control::xdp`]), the
//!   kernel's links and addresses ([`control::netlink`]), MAC table aging; the service
//!   around it and its control socket ([`control::service`], [`control::protocol`]).
//! - [`datapath`]: the AF_XDP sockets, UMEMs of 32 ports each, and the pinned
//!   per-queue workers whose hot loop (`datapath/worker.rs`) moves frames between
//!   ports; it takes port changes through one command channel per worker.
//! - [`switch`]: the switching decision, [`switch::decide`], a function of the frame,
//!   the ingress port and the shared tables (mode, MAC table), which learns sources
//!   into the MAC table and does nothing else.
//! - [`wire`]: zero-copy views of the headers the decision reads.
//! - [`netlab`]: throw-away labs of network namespaces for the demo and the tests.
//! - [`logging`]: the log's writer, which never stops hairpin, and its count of lines
//!   dropped (in `show stats`).
//!
//! The raw syscalls hairpin makes itself live in one private module, `sys`; besides it
//! `unsafe` is allowed only in the files that need it, each saying why: the datapath's
//! AF_XDP layer, hot loop, offload finishing, handoff and in-place retagging (`xsk.rs`,
//! `xsk/ring.rs`, `worker.rs`, `worker/offload.rs`, `handoff.rs`, `retag.rs`, which
//! touch UMEM frames, and the tests' fake kernel, `fake.rs`), the MAC table's region
//! shared with the XDP program (`switch/fdb.rs`), and the XDP maps' mmapped arrays
//! (`control/xdp.rs`).
#![deny(unsafe_code)]

pub mod control;
pub mod datapath;
pub mod logging;
pub mod netlab;
pub mod switch;
mod sys;
pub mod wire;

pub use sys::{in_netns, set_affinity};
