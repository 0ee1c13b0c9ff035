//! A port's storm control and ingress policing settings, as written ([`LimitSpec`], a
//! part of [`PortSpec`]), `run`'s per-port options for them ([`LimitFlags`]), and their
//! check into the switch's [`Limits`].
//!
//! | setting | unit | 0 or absent |
//! | --- | --- | --- |
//! | `storm_broadcast`, `storm_multicast`, `storm_unknown_unicast` | frames/s the port may send to the broadcast address, to multicast addresses, to unicast addresses the bridge floods | no limit |
//! | `storm_burst` | frames of each class at once | a tenth of a second's worth, at least 10 |
//! | `police_rate` | bits/s the port may send (`100M`: k, M and G multiply by 1000) | no limit |
//! | `police_burst` | bytes at once (`1M` likewise) | half a second's worth, at least 18432 |
//! | `police_pps` | frames/s the port may send (its burst a tenth of a second's worth, at least 10) | no limit |
use serde::Serialize;

use super::{FlagError, PortArg, PortSpec, SettingError};
use crate::switch::{Limits, meters::StormClass};
use hairpin_common::meter::MIN_BITS_PER_SECOND;

/// Storm control and ingress policing as `hairpin port add`, the config file's
/// `[[port]]`, the control socket and hairpin-cni write them (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, clap::Args)]
pub struct LimitSpec {
    /// Storm control: broadcast frames per second the port may send (0: no limit).
    #[arg(long, value_name = "PPS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm_broadcast: Option<u32>,
    /// Storm control: multicast frames per second (broadcast not included; 0: no
    /// limit).
    #[arg(long, value_name = "PPS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm_multicast: Option<u32>,
    /// Storm control: frames per second to unicast destinations the bridge does not
    /// know (flooded; 0: no limit).
    #[arg(long, value_name = "PPS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm_unknown_unicast: Option<u32>,
    /// Storm control: frames of each class let through at once (default: a tenth of a
    /// second's worth of the class's rate, at least 10).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm_burst: Option<u32>,
    /// Ingress policing: bits per second the port may send, e.g. `100M` (k, M, G:
    /// times 1000; 0: no limit).
    #[arg(long, value_name = "BITS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub police_rate: Option<String>,
    /// Ingress policing: bytes let through at once, e.g. `1M` (default: half a
    /// second at the rate, at least 18432).
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub police_burst: Option<String>,
    /// Ingress policing: frames per second the port may send (0: no limit).
    #[arg(long, value_name = "PPS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub police_pps: Option<u32>,
}

/// The keys of [`LimitSpec`], in [`PortSpec::KEYS`]'s order.
pub(super) const KEYS: [&str; 7] = [
    "storm_broadcast",
    "storm_multicast",
    "storm_unknown_unicast",
    "storm_burst",
    "police_rate",
    "police_burst",
    "police_pps",
];

/// One of [`LimitSpec`]'s settings, as an error names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// `storm_broadcast`, `storm_multicast`, `storm_unknown_unicast`.
    Storm(StormClass),
    /// `storm_burst`.
    StormBurst,
    /// `police_rate`.
    PoliceRate,
    /// `police_burst`.
    PoliceBurst,
    /// `police_pps`.
    PolicePps,
}

impl Key {
    /// The command-line option.
    pub fn option(self) -> &'static str {
        match self {
            Self::Storm(StormClass::Broadcast) => "--storm-broadcast",
            Self::Storm(StormClass::Multicast) => "--storm-multicast",
            Self::Storm(StormClass::UnknownUnicast) => "--storm-unknown-unicast",
            Self::StormBurst => "--storm-burst",
            Self::PoliceRate => "--police-rate",
            Self::PoliceBurst => "--police-burst",
            Self::PolicePps => "--police-pps",
        }
    }

    /// The config file's key.
    pub fn key(self) -> &'static str {
        match self {
            Self::Storm(StormClass::Broadcast) => KEYS[0],
            Self::Storm(StormClass::Multicast) => KEYS[1],
            Self::Storm(StormClass::UnknownUnicast) => KEYS[2],
            Self::StormBurst => KEYS[3],
            Self::PoliceRate => KEYS[4],
            Self::PoliceBurst => KEYS[5],
            Self::PolicePps => KEYS[6],
        }
    }
}

/// `text` as a count: digits, optionally followed by `k`, `M` or `G` (times 1000,
/// 1000², 1000³).
pub fn parse_amount(text: &str) -> Result<u64, String> {
    let (digits, scale) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 1_000),
        Some(b'M') => (&text[..text.len() - 1], 1_000_000),
        Some(b'G') => (&text[..text.len() - 1], 1_000_000_000),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a number (digits, then k, M or G for thousands, millions, billions)"
        ));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text} is too large"))
}

impl LimitSpec {
    /// Checks every setting and makes the switch's [`Limits`]; 0 is no limit. The
    /// error names the first setting that is wrong.
    pub fn check(&self) -> Result<Limits, SettingError> {
        let err = |key, value: &dyn ToString, why: &str| {
            SettingError::new(super::Setting::Limit(key), value.to_string(), why)
        };
        let nonzero = |v: Option<u32>| v.filter(|&v| v > 0);
        let storm_rates = [
            self.storm_broadcast,
            self.storm_multicast,
            self.storm_unknown_unicast,
        ];
        if let Some(burst) = self.storm_burst {
            if burst == 0 {
                return Err(err(
                    Key::StormBurst,
                    &burst,
                    "a burst of 0 would let no frame through; give 1 or more",
                ));
            }
            if storm_rates.iter().all(|r| nonzero(*r).is_none()) {
                return Err(err(
                    Key::StormBurst,
                    &burst,
                    "a storm burst without a storm rate limits nothing: give storm_broadcast, \
                     storm_multicast or storm_unknown_unicast too",
                ));
            }
        }
        let amount = |key, text: &String| parse_amount(text).map_err(|why| err(key, text, &why));
        let police_rate = match &self.police_rate {
            None => None,
            Some(text) => match amount(Key::PoliceRate, text)? {
                0 => None,
                rate if rate < MIN_BITS_PER_SECOND => {
                    return Err(err(
                        Key::PoliceRate,
                        text,
                        &format!(
                            "below {MIN_BITS_PER_SECOND} bits/s (8k), the slowest rate hairpin \
                             polices; the rate is in bits per second (100M is 100 Mbit/s)"
                        ),
                    ));
                }
                rate => Some(rate),
            },
        };
        let police_burst = match &self.police_burst {
            None => None,
            Some(text) => {
                let burst = amount(Key::PoliceBurst, text)?;
                if police_rate.is_none() {
                    return Err(err(
                        Key::PoliceBurst,
                        text,
                        "the burst of police_rate, in bytes: give police_rate too",
                    ));
                }
                if burst == 0 {
                    return Err(err(
                        Key::PoliceBurst,
                        text,
                        "a burst of 0 bytes would let no frame through; give 1 or more \
                         (default: half a second at the rate)",
                    ));
                }
                Some(burst)
            }
        };
        Ok(Limits {
            storm_broadcast: nonzero(self.storm_broadcast),
            storm_multicast: nonzero(self.storm_multicast),
            storm_unknown_unicast: nonzero(self.storm_unknown_unicast),
            storm_burst: self.storm_burst,
            police_rate,
            police_burst,
            police_pps: nonzero(self.police_pps),
        })
    }
}

impl From<&Limits> for LimitSpec {
    /// The settings that make `limits` (defaults left unwritten).
    fn from(limits: &Limits) -> Self {
        Self {
            storm_broadcast: limits.storm_broadcast,
            storm_multicast: limits.storm_multicast,
            storm_unknown_unicast: limits.storm_unknown_unicast,
            storm_burst: limits.storm_burst,
            police_rate: limits.police_rate.map(|r| r.to_string()),
            police_burst: limits.police_burst.map(|b| b.to_string()),
            police_pps: limits.police_pps,
        }
    }
}

/// Reads a count serde gives as a number or as text (`100000000` or `"100M"`), kept as
/// text for [`parse_amount`] to check with the other settings.
pub(super) fn amount<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Amount;
    impl serde::de::Visitor<'_> for Amount {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a count: a whole number, or a string such as \"100M\"")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            u64::try_from(v)
                .map(|v| v.to_string())
                .map_err(|_| E::custom(format!("{v} is negative")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
    }
    struct Optional;
    impl<'de> serde::de::Visitor<'de> for Optional {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a count: a whole number, or a string such as \"100M\"")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Amount).map(Some)
        }
    }
    d.deserialize_option(Optional)
}

/// One of [`LimitSpec`]'s fields, as [`LimitFlags::apply`] sets it.
type Field<T> = fn(&mut LimitSpec) -> &mut Option<T>;

/// `hairpin run`'s per-port options for storm control and policing: each names its
/// port (`--police-rate vm1=100M`) and sets one field of that port's [`LimitSpec`].
#[derive(Clone, Debug, Default, clap::Args)]
pub struct LimitFlags {
    /// PORT=PPS: storm control, broadcast frames per second PORT may send (repeatable).
    #[arg(long, conflicts_with = "config", value_name = "PORT=PPS")]
    pub storm_broadcast: Vec<PortArg>,
    /// PORT=PPS: storm control, multicast frames per second (broadcast not included).
    #[arg(long, conflicts_with = "config", value_name = "PORT=PPS")]
    pub storm_multicast: Vec<PortArg>,
    /// PORT=PPS: storm control, frames per second to unicast destinations the bridge
    /// floods (unknown).
    #[arg(long, conflicts_with = "config", value_name = "PORT=PPS")]
    pub storm_unknown_unicast: Vec<PortArg>,
    /// PORT=N: storm control's burst on PORT, frames of each class at once (default: a
    /// tenth of a second's worth, at least 10).
    #[arg(long, conflicts_with = "config", value_name = "PORT=N")]
    pub storm_burst: Vec<PortArg>,
    /// PORT=BITS: ingress policing, bits per second PORT may send (`vm1=100M`; k, M,
    /// G: times 1000).
    #[arg(long, conflicts_with = "config", value_name = "PORT=BITS")]
    pub police_rate: Vec<PortArg>,
    /// PORT=BYTES: ingress policing's burst (default: half a second at the rate,
    /// at least 18432).
    #[arg(long, conflicts_with = "config", value_name = "PORT=BYTES")]
    pub police_burst: Vec<PortArg>,
    /// PORT=PPS: ingress policing, frames per second PORT may send.
    #[arg(long, conflicts_with = "config", value_name = "PORT=PPS")]
    pub police_pps: Vec<PortArg>,
}

impl LimitFlags {
    /// Sets each option's field in the spec of the port it names (`specs`, in the order
    /// of `names`): once per port, numbers where the setting takes numbers; the values
    /// themselves are checked with the port ([`LimitSpec::check`]).
    pub(super) fn apply(&self, specs: &mut [PortSpec]) -> Result<(), FlagError> {
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let slot = |key: Key, arg: &PortArg| {
            names
                .iter()
                .position(|name| *name == arg.port)
                .ok_or_else(|| FlagError::UnknownPort {
                    option: key.option(),
                    port: arg.port.clone(),
                    known: names.join(","),
                })
        };
        let bad = |key: Key, arg: &PortArg, why: &str| FlagError::Option {
            option: key.option(),
            port: arg.port.clone(),
            value: arg.value.clone(),
            why: why.to_owned(),
        };
        let numbers: [(Key, &Vec<PortArg>, Field<u32>); 5] = [
            (
                Key::Storm(StormClass::Broadcast),
                &self.storm_broadcast,
                |l| &mut l.storm_broadcast,
            ),
            (
                Key::Storm(StormClass::Multicast),
                &self.storm_multicast,
                |l| &mut l.storm_multicast,
            ),
            (
                Key::Storm(StormClass::UnknownUnicast),
                &self.storm_unknown_unicast,
                |l| &mut l.storm_unknown_unicast,
            ),
            (Key::StormBurst, &self.storm_burst, |l| &mut l.storm_burst),
            (Key::PolicePps, &self.police_pps, |l| &mut l.police_pps),
        ];
        for (key, args, field) in numbers {
            for arg in args {
                let i = slot(key, arg)?;
                let n = arg.value.parse::<u32>().map_err(|_| {
                    bad(
                        key,
                        arg,
                        "not a whole number (frames, or frames per second)",
                    )
                })?;
                if field(&mut specs[i].limits).replace(n).is_some() {
                    return Err(bad(key, arg, "given twice for the port"));
                }
            }
        }
        let texts: [(Key, &Vec<PortArg>, Field<String>); 2] = [
            (Key::PoliceRate, &self.police_rate, |l| &mut l.police_rate),
            (Key::PoliceBurst, &self.police_burst, |l| {
                &mut l.police_burst
            }),
        ];
        for (key, args, field) in texts {
            for arg in args {
                let i = slot(key, arg)?;
                if field(&mut specs[i].limits)
                    .replace(arg.value.clone())
                    .is_some()
                {
                    return Err(bad(key, arg, "given twice for the port"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
