//! The XDP program loads into this kernel, attaches to a veth inside a namespace, sees
//! real frames on the queue they arrive on, and detaches cleanly.
use hairpin::control::{
    port::Interface,
    xdp::{AttachedMode, Steering, XdpAttachMode},
};
use hairpin_common::PortConf;

use crate::{lab, ping};

#[test]
fn xdp_program_counts_frames_per_queue_and_detaches() {
    let mut lab = lab("xcnt");
    let a = lab.add_ns("a").unwrap();
    let b = lab.add_ns("b").unwrap();
    lab.veth((&a, "va"), (&b, "vb"), 1).unwrap();
    a.ip(&["addr", "add", "198.18.0.1/24", "dev", "va"])
        .unwrap();
    b.ip(&["addr", "add", "198.18.0.2/24", "dev", "vb"])
        .unwrap();

    let (steering, mode) = b
        .enter(|| {
            let vb = Interface::lookup("vb").unwrap();
            assert_eq!(vb.rx_queues, 1);
            let mut steering = Steering::load(1, false).unwrap();
            steering
                .configure_port(
                    &vb,
                    PortConf {
                        slot: 3,
                        ..PortConf::default()
                    },
                )
                .unwrap();
            let mode = steering.attach(&vb, XdpAttachMode::Auto).unwrap();
            (steering, mode)
        })
        .unwrap();
    assert_eq!(mode, AttachedMode::Native, "veth has native XDP");
    let shown = b.ip(&["-d", "link", "show", "vb"]).unwrap();
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("xdp"),
        "the program shows on vb"
    );

    ping(&a, "198.18.0.2", 5).unwrap();

    let stats = steering.queue_stats(3, 0).unwrap();
    // Five echo requests at least (ARP and IPv6 chatter may add more), all passed to the
    // kernel since no socket is bound, none steered.
    assert!(stats.rx_packets >= 5, "{stats:?}");
    assert_eq!(stats.passed, stats.rx_packets, "{stats:?}");
    assert_eq!(stats.steered, 0, "{stats:?}");
    assert!(stats.rx_bytes >= 5 * 98, "{stats:?}");
    // A port slot that was never configured has no counters.
    assert!(steering.queue_stats(0, 0).is_err());

    drop(steering);
    let shown = b.ip(&["-d", "link", "show", "vb"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&shown.stdout).contains("prog/xdp"),
        "detached on drop"
    );
    ping(&a, "198.18.0.2", 1).unwrap();
}
