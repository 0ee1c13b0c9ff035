//! Limits, their defaults and meters, and [`decide_metered`] on a bridge: policing
//! before the decision, storm control by class on its verdict.
use std::sync::Arc;

use super::*;
use crate::{
    switch::{Fdb, Mode, PortPolicy, PortSet, Role, tables::tables_of},
    wire::Mac,
};

const A: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);
const B: Mac = Mac([0x02, 0, 0, 0, 0, 0x0b]);
const BROADCAST: Mac = Mac([0xff; 6]);
const GROUP: Mac = Mac([0x01, 0x00, 0x5e, 0, 0, 1]);

fn frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(len, 0);
    f
}

/// Three downlinks in `mode`, port 0 with `limits`.
fn bridge(mode: Mode, limits: Limits) -> Tables {
    let mut policies = vec![PortPolicy::default(); 3];
    policies[0].limits = limits;
    if mode != Mode::Veb {
        policies[2].role = Role::Uplink;
    }
    tables_of(mode, &policies, 64).unwrap()
}

fn at(ns: u64) -> Now {
    Now {
        secs: (ns / 1_000_000_000) as u32,
        ns,
    }
}

/// How many of `n` copies of `f`, received on port 0 at `now`, are not dropped for
/// `reason`.
fn passed(t: &Tables, f: &[u8], n: usize, now: Now, reason: DropReason) -> usize {
    (0..n)
        .filter(|_| decide_metered(t, f, f.len(), 0, now).action != Action::Drop(reason))
        .count()
}

#[test]
fn defaults_are_a_tenth_of_a_second_half_for_policing_with_floors() {
    assert_eq!(default_packet_burst(1000), 100);
    assert_eq!(default_packet_burst(50), 10);
    assert_eq!(default_police_burst(100_000_000), 6_250_000);
    assert_eq!(default_police_burst(1_000_000), 62_500);
    assert_eq!(default_police_burst(100_000), MIN_DEFAULT_POLICE_BURST);
    let limits = Limits {
        storm_broadcast: Some(1000),
        storm_unknown_unicast: Some(20),
        police_rate: Some(100_000_000),
        police_pps: Some(5000),
        ..Limits::default()
    };
    assert_eq!(
        limits.in_force(),
        [
            (
                Limit::PoliceRate,
                Rate {
                    rate: 100_000_000,
                    burst: 6_250_000
                }
            ),
            (
                Limit::PolicePps,
                Rate {
                    rate: 5000,
                    burst: 500
                }
            ),
            (
                Limit::Storm(StormClass::Broadcast),
                Rate {
                    rate: 1000,
                    burst: 100
                }
            ),
            (
                Limit::Storm(StormClass::UnknownUnicast),
                Rate {
                    rate: 20,
                    burst: 10
                }
            ),
        ]
    );
    let burst = Limits {
        storm_burst: Some(7),
        police_burst: Some(3000),
        ..limits
    };
    assert_eq!(burst.storm(StormClass::Broadcast).unwrap().burst, 7);
    assert_eq!(burst.police().unwrap().burst, 3000);
    assert!(Limits::default().is_empty() && !limits.is_empty());
    assert!(!Limits::default().meters().polices());
    assert_eq!(
        Limit::PoliceRate.describe(limits.police().unwrap()),
        "police_rate 100 Mbit/s (burst 6250000 bytes)"
    );
    assert_eq!(
        Limit::Storm(StormClass::Broadcast).describe(Rate {
            rate: 1000,
            burst: 100
        }),
        "storm_broadcast 1000 pps (burst 100)"
    );
    assert_eq!(bits_per_second(1_500_000), "1500 kbit/s");
    assert_eq!(bits_per_second(2_000_000_000), "2 Gbit/s");
    assert_eq!(bits_per_second(8_001), "8001 bit/s");
}

#[test]
fn a_broadcast_storm_is_cut_to_its_burst_then_its_rate_and_unicast_passes() {
    let t = bridge(
        Mode::Veb,
        Limits {
            storm_broadcast: Some(1000),
            storm_burst: Some(50),
            ..Limits::default()
        },
    );
    let start = 10_000_000_000;
    let bcast = frame(BROADCAST, A, 60);
    assert_eq!(passed(&t, &bcast, 500, at(start), DropReason::Storm), 50);
    // A millisecond later, one more.
    assert_eq!(
        passed(&t, &bcast, 10, at(start + 1_000_000), DropReason::Storm),
        1
    );
    // Multicast and unknown unicast have no limit here; known unicast never has one.
    assert_eq!(
        passed(&t, &frame(GROUP, A, 60), 200, at(start), DropReason::Storm),
        200
    );
    decide_metered(&t, &frame(A, B, 60), 60, 1, at(start));
    let known = frame(B, A, 60);
    let verdict = decide_metered(&t, &known, 60, 0, at(start));
    assert_eq!(verdict.action, Action::Forward(1));
    assert_eq!(
        passed(
            &t,
            &frame(Mac([2, 0, 0, 0, 0, 0x99]), A, 60),
            200,
            at(start),
            DropReason::Storm
        ),
        200
    );
    // Another port's broadcasts are its own business.
    let other = frame(BROADCAST, B, 60);
    assert!(
        (0..200).all(|_| decide_metered(&t, &other, 60, 1, at(start)).action
            != Action::Drop(DropReason::Storm))
    );
}

#[test]
fn each_storm_class_has_its_own_meter() {
    let t = bridge(
        Mode::Veb,
        Limits {
            storm_broadcast: Some(100),
            storm_multicast: Some(100),
            storm_unknown_unicast: Some(100),
            storm_burst: Some(3),
            ..Limits::default()
        },
    );
    let now = at(1_000_000_000);
    let unknown = frame(Mac([2, 0, 0, 0, 0, 0x77]), A, 60);
    for f in [frame(BROADCAST, A, 60), frame(GROUP, A, 60), unknown] {
        assert_eq!(passed(&t, &f, 10, now, DropReason::Storm), 3);
    }
    assert_eq!(
        storm_class(&frame(B, A, 60), Action::Forward(1)),
        None,
        "a known unicast"
    );
    assert_eq!(
        storm_class(&frame(BROADCAST, A, 60), Action::Drop(DropReason::Vlan)),
        None,
        "dropped anyway: not metered"
    );
}

#[test]
fn a_broadcast_a_vepa_downlink_sends_up_is_storm_controlled_too() {
    let t = bridge(
        Mode::Vepa,
        Limits {
            storm_broadcast: Some(10),
            storm_burst: Some(2),
            ..Limits::default()
        },
    );
    let f = frame(BROADCAST, A, 60);
    assert_eq!(
        decide_metered(&t, &f, 60, 0, at(5)).action,
        Action::Forward(2)
    );
    assert_eq!(passed(&t, &f, 10, at(5), DropReason::Storm), 1);
    // A unicast to the uplink is no flood: not unknown unicast to hairpin.
    assert_eq!(storm_class(&frame(B, A, 60), Action::Forward(2)), None);
}

#[test]
fn policing_drops_before_the_decision_so_nothing_is_learned() {
    let t = bridge(
        Mode::Veb,
        Limits {
            police_rate: Some(8_000_000), // 1 MB/s
            police_burst: Some(3000),
            ..Limits::default()
        },
    );
    let now = at(2_000_000_000);
    let f = frame(BROADCAST, A, 1000);
    // 3000 bytes: three frames, then the fourth over.
    assert_eq!(passed(&t, &f, 10, now, DropReason::Policed), 3);
    let other = frame(BROADCAST, B, 1000);
    assert_eq!(
        decide_metered(&t, &other, 1000, 0, now).action,
        Action::Drop(DropReason::Policed)
    );
    assert_eq!(
        t.fdb.lookup(0, B),
        None,
        "a policed frame's source is not learned"
    );
    assert_eq!(t.fdb.lookup(0, A), Some(0));
    // A millisecond at 1 MB/s is 1000 bytes: one frame more.
    let later = at(2_001_000_000);
    assert_eq!(passed(&t, &f, 10, later, DropReason::Policed), 1);
    // Port 1 is not policed.
    assert!(
        (0..100).all(|_| decide_metered(&t, &other, 1000, 1, now).action
            != Action::Drop(DropReason::Policed))
    );
}

#[test]
fn a_packet_rate_polices_frames_whatever_their_size() {
    let t = bridge(
        Mode::Veb,
        Limits {
            police_pps: Some(100),
            ..Limits::default()
        },
    );
    let now = at(3_000_000_000);
    // The default burst: 10 frames.
    assert_eq!(
        passed(&t, &frame(B, A, 60), 50, now, DropReason::Policed),
        10
    );
}

#[test]
fn shared_meters_are_the_words_the_xdp_program_reads() {
    #[derive(Debug)]
    struct Region(Box<[AtomicU64]>);
    impl SharedMemory for Region {
        fn region(&self) -> (NonNull<u8>, usize) {
            (
                NonNull::from(&self.0[0]).cast(),
                self.0.len() * size_of::<u64>(),
            )
        }
    }
    let words: Box<[AtomicU64]> = (0..meter::ENTRIES).map(|_| AtomicU64::new(0)).collect();
    let raw = NonNull::from(&words[0]).cast::<u64>();
    // SAFETY: the region is zeroed, aligned and outlives the meters.
    let meters = unsafe { Meters::in_shared(Box::new(Region(words))) }.unwrap();
    let m = Meter::packets(1000, 1);
    assert!(meters.take(7, meter::POLICE_PACKETS, &m, 1, 5_000));
    let index = meter::index(7, meter::POLICE_PACKETS).unwrap() as usize;
    // SAFETY: `index` is within the region; nothing writes it while this reads.
    let word = unsafe { raw.as_ptr().add(index).read() };
    assert_eq!(word, 5_000 + 1_000_000, "the TAT, one interval on");
    assert_eq!(meters.state(7, meter::POLICE_PACKETS), word);
    assert!(!meters.take(7, meter::POLICE_PACKETS, &m, 1, 5_000));
    meters.reset(7);
    assert_eq!(meters.state(7, meter::POLICE_PACKETS), 0);
    assert!(meters.take(7, meter::POLICE_PACKETS, &m, 1, 5_000));

    let small = Region((0..4).map(|_| AtomicU64::new(0)).collect());
    // SAFETY: refused before the region is used.
    let refused = unsafe { Meters::in_shared(Box::new(small)) };
    assert!(matches!(refused, Err(SharedMemoryError::TooSmall { .. })));
}

#[test]
fn tables_that_replace_others_keep_their_meters() {
    let limits = Limits {
        storm_broadcast: Some(10),
        storm_burst: Some(1),
        ..Limits::default()
    };
    let first = bridge(Mode::Veb, limits);
    let f = frame(BROADCAST, A, 60);
    assert_eq!(passed(&first, &f, 5, at(9), DropReason::Storm), 1);
    let mut policies = vec![PortPolicy::default(); 3];
    policies[0].limits = limits;
    let slots: Vec<_> = policies.into_iter().map(Some).collect();
    let next = Tables::new(
        Mode::Veb,
        &slots,
        PortSet::first(3),
        Arc::new(Fdb::with_capacity(64)),
    )
    .unwrap()
    .with_meters(Arc::clone(&first.meters));
    assert_eq!(
        passed(&next, &f, 5, at(9), DropReason::Storm),
        0,
        "still spent"
    );
}

#[test]
fn a_trace_names_the_limits_its_frame_is_subject_to() {
    let t = bridge(
        Mode::Veb,
        Limits {
            storm_broadcast: Some(1000),
            storm_multicast: Some(500),
            police_rate: Some(1_000_000_000),
            ..Limits::default()
        },
    );
    let names = |f: &[u8], action| -> Vec<&str> {
        subject_to(&t, f, 0, action)
            .iter()
            .map(|(l, _)| l.name())
            .collect()
    };
    let flood = Action::Flood(PortSet::EMPTY.with(1));
    assert_eq!(
        names(&frame(BROADCAST, A, 60), flood),
        ["police_rate", "storm_broadcast"]
    );
    assert_eq!(
        names(&frame(GROUP, A, 60), flood),
        ["police_rate", "storm_multicast"]
    );
    assert_eq!(names(&frame(B, A, 60), Action::Forward(1)), ["police_rate"]);
    assert!(subject_to(&t, &frame(B, A, 60), 1, flood).is_empty());
}

#[test]
fn a_frame_over_the_byte_rate_charges_the_packet_meter_nothing() {
    let t = bridge(
        Mode::Veb,
        Limits {
            police_rate: Some(8_000_000), // 1 MB/s
            police_burst: Some(1000),
            police_pps: Some(10),
            ..Limits::default()
        },
    );
    let now = at(4_000_000_000);
    let big = frame(BROADCAST, A, 1000);
    assert_eq!(passed(&t, &big, 5, now, DropReason::Policed), 1);
    let after_one = t.meters.state(0, meter::POLICE_PACKETS);
    assert_eq!(after_one, 4_000_000_000 + 100_000_000, "one frame charged");
    // Fifty more over the byte rate: refused, and the packet meter, which would have
    // passed nine of them, is charged nothing.
    assert_eq!(passed(&t, &big, 50, now, DropReason::Policed), 0);
    assert_eq!(t.meters.state(0, meter::POLICE_PACKETS), after_one);
}
