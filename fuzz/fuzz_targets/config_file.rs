//! `hairpin run --config FILE`: `config_file::parse` on any text never panics, and a
//! file it accepts describes a bridge hairpin can build, whose every port `port add`
//! accepts as it is, and which, written back as TOML, loads as the same bridge.
#![no_main]

use std::path::Path;

use hairpin::{
    control::{bridge::check_config, config_file, spec::PortSpec},
    switch::vlan::PortVlans,
};
use hairpin_fuzz::to_toml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = config_file::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    for (i, port) in config.ports.iter().enumerate() {
        assert!(
            config.ports[..i].iter().all(|p| p.name != port.name),
            "{} twice",
            port.name
        );
        if let Some(PortVlans::Trunk { tagged, .. }) = &port.policy.vlans {
            assert!(tagged.is_sorted(), "a trunk's VLANs in order");
        }
        let back = PortSpec::from(port).check();
        assert_eq!(back.as_ref(), Ok(port), "port add of {:?}", port.name);
    }
    // What the file accepts, a bridge starts with: the same check `Bridge::start` makes.
    check_config(&config).expect("a bridge the file accepts can be built");
    let again = to_toml(&config);
    match config_file::parse(&again, Path::new("again.toml")) {
        Ok(reloaded) => assert_eq!(reloaded, config, "written back:\n{again}"),
        Err(e) => panic!("written back, it does not load: {e}\n{again}"),
    }
});
