//! Embeds the XDP object that `cargo xtask build` produced.
//!
//! The object comes from `HAIRPIN_EBPF_OBJ`, or else from the eBPF crate's usual output
//! path. When neither exists (a plain `cargo build` on a machine without the eBPF
//! toolchain) an empty object is embedded, and `hairpin` refuses to start with an error
//! that says to build it with `cargo xtask build`. This keeps `cargo build`,
//! `cargo clippy` and the unit tests working anywhere.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo::rerun-if-env-changed=HAIRPIN_EBPF_OBJ");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let default = manifest.join("../target/bpfel-unknown-none/release/hairpin-ebpf");
    let source = env::var_os("HAIRPIN_EBPF_OBJ").map_or(default, PathBuf::from);
    println!("cargo::rerun-if-changed={}", source.display());

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("hairpin.bpf.o");
    match fs::read(&source) {
        Ok(bytes) => fs::write(&out, bytes).expect("writing the embedded eBPF object"),
        Err(_) => {
            println!(
                "cargo::warning=no eBPF object at {}: this hairpin cannot attach; build with `cargo xtask build`",
                source.display()
            );
            fs::write(&out, []).expect("writing the empty eBPF object");
        }
    }
}
