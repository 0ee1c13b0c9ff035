//! Privileged integration tests: real namespaces, real veths, this kernel's XDP and AF_XDP.
//!
//! Built only with `--features privileged-tests` (`cargo xtask test` turns it on). Every
//! test builds its own [`hairpin::netlab::Lab`], named after the test and this process,
//! and the lab removes itself on every path, panics included. A test that cannot run
//! here (not root, no AF_XDP) fails with the reason; none passes by skipping.

mod xdp_counters;

use hairpin::{control::preflight, netlab::Lab};

/// A fresh lab for one test, after checking that privileged tests can run at all.
pub fn lab(tag: &str) -> Lab {
    if let Err(e) = preflight::check() {
        panic!("privileged tests cannot run here: {e}");
    }
    Lab::sweep_stale();
    Lab::new(tag)
}

/// Pings `addr` from inside `ns`: `count` echoes, failing on the first unanswered one.
pub fn ping(
    ns: &hairpin::netlab::Netns,
    addr: &str,
    count: u32,
) -> Result<(), hairpin::netlab::LabError> {
    let count = count.to_string();
    ns.run("ping", &["-c", &count, "-i", "0.05", "-W", "1", "-q", addr])
        .map(drop)
}
