//! The switching decision: what to do with one frame.
//!
//! [`decide`] is not a pure function. It reads the frame's header and the shared
//! [`Tables`], and it writes one thing: it learns the frame's source (or refreshes its
//! stamp) in the MAC table, [`Fdb`], which every worker and the XDP program's fast path
//! share, so a learn is seen by all of them at once. It performs no I/O and sends
//! nothing: it returns a [`Verdict`] for the caller to carry out. So unit and property
//! tests call it directly, without root or sockets, and look at the table afterwards.
//!
//! One job per file:
//!
//! - `decision.rs`: [`decide`] itself (its tests in `decision/tests.rs`);
//! - `tables.rs`: the bridge's set-up it reads ([`Mode`], [`Role`], [`PortPolicy`],
//!   [`Tables`], [`TablesError`]);
//! - `action.rs`: what it answers ([`Action`], [`DropReason`], [`Verdict`]);
//! - `trace.rs`: [`trace`], [`decide`] run without learning and explained step by step
//!   (`hairpin trace`);
//! - `ports.rs`: sets of ports ([`PortSet`]);
//! - `floods.rs`: each VLAN's flood domain, for the kernel fast path's floods
//!   ([`flood_domains`]);
//! - [`vlan`]: 802.1Q classification on ingress and tagging on egress;
//! - [`fdb`]: the lock-free MAC table;
//! - [`meters`]: storm control and ingress policing, the meters the workers share with
//!   the XDP program, and [`decide_metered`];
//! - [`guard`]: the IP source guard (`allow_ip`): IP, ARP and ND from a port checked
//!   against its allowed prefixes.
mod action;
mod decision;
pub mod fdb;
mod floods;
pub mod guard;
pub mod meters;
mod ports;
mod tables;
pub mod trace;
pub mod vlan;

pub use action::{Action, DropReason, Verdict};
pub use decision::{decide, decide_with};
pub use fdb::{Fdb, PortId, VlanId};
pub use floods::flood_domains;
pub use meters::{Limits, Meters, Now, decide_metered};
pub use ports::{MAX_PORTS, PortSet};
pub use tables::{
    DEFAULT_MAX_MACS, GROUP_FWD_RESTRICTED, Mode, PortPolicy, Role, Tables, TablesError,
};
pub use trace::{Learning, Trace, trace};
