//! Why a command failed, as the CNI spec's error result: a code, a short message and
//! the details.
//!
//! Codes 1–99 are the spec's; hairpin-cni's own start at 100.
use std::{fmt, io};

use cni_plugin::reply::ErrorReply;
use semver::Version;

/// The spec's error codes hairpin-cni uses, and its own.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// I/O failure (netlink, a file, an IPAM plugin that would not run).
    pub const IO: u32 = 5;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later: hairpin is not answering on its socket (yet).
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// hairpin refused the request.
    pub const HAIRPIN_REFUSED: u32 = 100;
    /// CHECK found the attachment not as ADD left it.
    pub const CHECK_FAILED: u32 = 101;
}

/// A failed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The error code.
    pub code: u32,
    /// A short message.
    pub msg: &'static str,
    /// What happened, in full.
    pub details: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.msg, self.code, self.details)
    }
}

impl Failure {
    fn new(code: u32, msg: &'static str, details: impl Into<String>) -> Self {
        Self {
            code,
            msg,
            details: details.into(),
        }
    }

    /// Code 1.
    pub fn incompatible_version(details: impl Into<String>) -> Self {
        Self::new(
            code::INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            details,
        )
    }

    /// Code 2.
    pub fn unsupported_field(details: impl Into<String>) -> Self {
        Self::new(
            code::UNSUPPORTED_FIELD,
            "unsupported field in network configuration",
            details,
        )
    }

    /// Code 5, with what was being done.
    pub fn io(doing: impl fmt::Display, error: impl fmt::Display) -> Self {
        Self::new(code::IO, "I/O failure", format!("{doing}: {error}"))
    }

    /// Code 7.
    pub fn invalid_config(details: impl Into<String>) -> Self {
        Self::new(
            code::INVALID_CONFIG,
            "invalid network configuration",
            details,
        )
    }

    /// Code 11.
    pub fn try_again_later(details: impl Into<String>) -> Self {
        Self::new(code::TRY_AGAIN_LATER, "try again later", details)
    }

    /// Code 100.
    pub fn hairpin_refused(details: impl Into<String>) -> Self {
        Self::new(
            code::HAIRPIN_REFUSED,
            "hairpin refused the request",
            details,
        )
    }

    /// Code 101.
    pub fn check_failed(details: impl Into<String>) -> Self {
        Self::new(
            code::CHECK_FAILED,
            "attachment is not as ADD left it",
            details,
        )
    }

    /// An IPAM plugin's own error result, passed on with its code.
    pub fn delegated(plugin: &str, code: u32, msg: &str, details: &str) -> Self {
        let details = if details.is_empty() {
            format!("IPAM plugin {plugin}: {msg}")
        } else {
            format!("IPAM plugin {plugin}: {msg}: {details}")
        };
        Self::new(code, "IPAM plugin failed", details)
    }

    /// The spec's error result for CNI version `version`.
    pub fn into_reply(self, version: Version) -> ErrorReply<'static> {
        ErrorReply {
            cni_version: version,
            code: i32::try_from(self.code).unwrap_or(i32::MAX),
            msg: self.msg,
            details: self.details,
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Self::io("I/O", e)
    }
}
