//! `cargo xtask fuzz`: the fuzz targets of `fuzz/` (cargo-fuzz: libFuzzer, nightly,
//! AddressSanitizer), each for a while, starting from its saved corpus.
//!
//! The saved corpus, `fuzz/corpus/TARGET/`, is only read: what a run finds goes to a
//! scratch directory that is removed afterwards, so fuzzing never dirties the tree. A
//! crash fails the run and names the input that caused it (libFuzzer writes it under
//! `fuzz/artifacts/TARGET/`) and how to replay it.
use std::{
    collections::BTreeSet,
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{ebpf_object, nightly_cargo, setup, status, step, workspace};

/// Every target, in the order they run.
pub const TARGETS: &[&str] = &[
    "decide",
    "vlan_retag",
    "config_file",
    "port_spec",
    "netlink",
    "ip_guard",
];

/// Seconds per target of `cargo xtask fuzz`, unless `--seconds` says otherwise.
pub const DEFAULT_SECONDS: u64 = 60;

/// Seconds per target in `cargo xtask test`: the saved corpus replayed, then a short
/// search from it. On two cores the six runs take a minute; the build before them 2¼
/// minutes from nothing, one after a change to hairpin.
pub const TEST_SECONDS: u64 = 10;

/// For `cargo fuzz build` and `cargo fuzz run` alike (the run rebuilds if they differ):
/// overflow checks and debug assertions on, as in the unit tests.
const BUILD_FLAGS: &[&str] = &["--debug-assertions"];

/// Fuzzes `target` (every target if `None`) for `seconds` each.
pub fn run(seconds: u64, target: Option<&str>) -> Result<()> {
    let targets: Vec<&str> = match target {
        None => TARGETS.to_vec(),
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => bail!("no fuzz target {t:?}; the targets: {}", TARGETS.join(", ")),
    };
    if setup::cargo_fuzz_version().is_none() {
        bail!(
            "cargo-fuzz is missing: `cargo xtask setup` installs it \
             (or `cargo install cargo-fuzz --locked`)"
        );
    }
    let dir = workspace().join("fuzz");
    step("building the fuzz targets (nightly, AddressSanitizer; minutes the first time)");
    status(fuzz_command(&dir, "build").args(BUILD_FLAGS))
        .context("building the fuzz targets (is the nightly toolchain installed?)")?;
    for target in targets {
        step(&format!(
            "fuzzing {target} for {seconds} s, from fuzz/corpus/{target}/"
        ));
        fuzz_one(&dir, target, seconds)?;
    }
    Ok(())
}

/// `cargo +nightly fuzz COMMAND` in `dir`.
fn fuzz_command(dir: &Path, command: &str) -> Command {
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", command])
        .current_dir(dir)
        // The library embeds the XDP object; the targets never load it, and without it
        // (no `cargo xtask build` yet) an empty one is embedded instead.
        .env("HAIRPIN_EBPF_OBJ", ebpf_object());
    cmd
}

fn fuzz_one(dir: &Path, target: &str, seconds: u64) -> Result<()> {
    let scratch = env::temp_dir().join(format!("hairpin-fuzz-{target}-{}", std::process::id()));
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let artifacts = dir.join("artifacts").join(target);
    let before = files(&artifacts);
    // libFuzzer writes new inputs to the first corpus directory only.
    let result = status(
        fuzz_command(dir, "run")
            .args(BUILD_FLAGS)
            .arg(target)
            .arg(&scratch)
            .arg(Path::new("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // Quiet: no line per new input, but the final counts, and a crash in full.
            .args(["-verbosity=0", "-print_funcs=0", "-print_final_stats=1"]),
    );
    let _ = fs::remove_dir_all(&scratch);
    if result.is_ok() {
        return Ok(());
    }
    let found: Vec<PathBuf> = files(&artifacts).difference(&before).cloned().collect();
    match found.as_slice() {
        [] => bail!(
            "fuzz target {target} failed (see above); it left no input in {}",
            artifacts.display()
        ),
        inputs => {
            let list: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
            bail!(
                "fuzz target {target} crashed on {}; replay it with \
                 `cd fuzz && cargo +nightly fuzz run --debug-assertions {target} {}`, \
                 and keep it as a seed once fixed (copy it into fuzz/corpus/{target}/)",
                list.join(", "),
                list[0],
            )
        }
    }
}

/// The files in `dir` (none if it does not exist).
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_runs_and_has_saved_seeds() {
        let manifest = fs::read_to_string(workspace().join("fuzz/Cargo.toml")).unwrap();
        let bins: Vec<&str> = manifest
            .split("[[bin]]")
            .skip(1)
            .filter_map(|bin| bin.lines().find_map(|l| l.strip_prefix("name = ")))
            .map(|name| name.trim_matches('"'))
            .collect();
        assert_eq!(bins, TARGETS, "fuzz/Cargo.toml's targets");
        for target in TARGETS {
            let seeds = files(&workspace().join("fuzz/corpus").join(target));
            assert!(seeds.len() >= 3, "{target}: {seeds:?}");
        }
    }
}
