//! `cargo xtask`: set up, build, run, test and benchmark hairpin.
//!
//! Every command says what it does, one line a step, and fails with what to do next.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

mod fuzz;
mod setup;

/// Build, run and test hairpin.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what the build needs (Debian packages, nightly rust-src, bpf-linker,
    /// cargo-fuzz), if missing.
    Setup,
    /// Build the XDP object and the `hairpin` binary with the object embedded.
    Build {
        /// Optimised build: target/release/hairpin.
        #[arg(long)]
        release: bool,
    },
    /// Set up, build (release) and run hairpin as root with ARGS; with none, the demo lab.
    Run {
        /// Arguments for `hairpin`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build (release) and measure hairpin against the Linux bridge.
    Bench {
        /// One short round: checks the harness works (for CI), not the speed.
        #[arg(long)]
        quick: bool,
        /// More arguments for `hairpin-bench` (see `--help` there).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then run the whole suite: unit tests, every fuzz target briefly, the
    /// privileged integration tests, the quick benchmark.
    Test {
        /// Only tests whose name contains this (then no fuzzing and no benchmark).
        filter: Option<String>,
    },
    /// Run the fuzz targets of fuzz/ (cargo-fuzz, nightly), each from its saved corpus.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = fuzz::DEFAULT_SECONDS)]
        seconds: u64,
        /// Only this target (decide, vlan_retag, config_file, port_spec, netlink).
        target: Option<String>,
    },
    /// Set up, then run the soak (mixed traffic, port churn; memory, descriptors, UMEM
    /// frames and counters checked once a minute): docs/reliability.md.
    Soak {
        /// How long.
        #[arg(long, default_value_t = 10)]
        minutes: u32,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Task::Setup => setup::run(),
        Task::Build { release } => build(release).map(drop),
        Task::Run { args } => {
            setup::run()?;
            let hairpin = build(true)?;
            run_hairpin(&hairpin, &args)
        }
        Task::Bench { quick, args } => {
            setup::run()?;
            setup::bench_peers();
            bench(quick, &args)
        }
        Task::Test { filter } => {
            setup::run()?;
            test(filter.as_deref())
        }
        Task::Soak { minutes } => {
            setup::run()?;
            soak(minutes)
        }
        Task::Fuzz { seconds, target } => fuzz::run(seconds, target.as_deref()),
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Prints a step line.
pub fn step(text: &str) {
    println!("==> {text}");
}

/// Runs `cmd`, failing with its command line when it does not succeed.
pub fn status(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A `cargo` command for the host toolchain, in the workspace root.
fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace());
    cmd
}

fn ebpf_object() -> PathBuf {
    workspace().join("target/bpfel-unknown-none/release/hairpin-ebpf")
}

/// A `cargo` command for the nightly toolchain (`rustup run nightly cargo`), in the
/// workspace root.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"])
        .current_dir(workspace());
    // The outer (stable) cargo's variables would pin the inner one to its toolchain.
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Builds the XDP object (nightly, `bpfel-unknown-none`) and then `hairpin` with it
/// embedded, and `hairpin-cni` beside it; returns hairpin's path.
fn build(release: bool) -> Result<PathBuf> {
    step("building the XDP program (nightly, bpfel-unknown-none)");
    let mut ebpf = nightly_cargo();
    ebpf.args(["build", "--package", "hairpin-ebpf"]).args([
        "-Z",
        "build-std=core",
        "--target",
        "bpfel-unknown-none",
        "--release",
    ]);
    status(&mut ebpf).context("building the XDP program (is `cargo xtask setup` done?)")?;

    let profile = if release { "release" } else { "debug" };
    step(&format!("building hairpin ({profile})"));
    let mut host = cargo();
    host.args(["build", "--package", "hairpin", "--bin", "hairpin"])
        .args(["--package", "hairpin-cni", "--bin", "hairpin-cni"])
        .env("HAIRPIN_EBPF_OBJ", ebpf_object());
    if release {
        host.arg("--release");
    }
    status(&mut host)?;
    Ok(workspace().join("target").join(profile).join("hairpin"))
}

fn bench(quick: bool, args: &[String]) -> Result<()> {
    if !is_root() {
        bail!(
            "the benchmark builds network namespaces and attaches XDP: run `sudo -E cargo xtask bench`"
        );
    }
    let hairpin = build(true)?;
    step("building hairpin-bench (release)");
    status(
        cargo()
            .args(["build", "--release", "--package", "hairpin-bench"])
            .env("HAIRPIN_EBPF_OBJ", ebpf_object()),
    )?;
    let mut cmd = Command::new(workspace().join("target/release/hairpin-bench"));
    cmd.arg("--hairpin").arg(&hairpin).args(args);
    // Every run keeps its report and charts, unless told where to put them.
    if !args.iter().any(|a| a == "--out" || a.starts_with("--out=")) {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        cmd.arg("--out")
            .arg(workspace().join(format!("target/bench/run-{stamp}")));
    }
    if quick {
        cmd.arg("--quick");
    }
    step("running the benchmark");
    status(&mut cmd)
}

fn run_hairpin(hairpin: &Path, args: &[String]) -> Result<()> {
    let args: Vec<String> = if args.is_empty() {
        vec!["demo".into()]
    } else {
        args.to_vec()
    };
    let mut cmd = if is_root() {
        Command::new(hairpin)
    } else {
        step("hairpin needs root: running it with sudo");
        let mut sudo = Command::new("sudo");
        sudo.arg(hairpin);
        sudo
    };
    cmd.args(&args);
    step(&format!("running hairpin {}", args.join(" ")));
    status(&mut cmd)
}

/// The soak test (ignored in the suite) against a debug build, whose workers check
/// their UMEM ledger on every turn.
fn soak(minutes: u32) -> Result<()> {
    if !is_root() {
        bail!(
            "the soak builds network namespaces and attaches XDP: run `sudo -E cargo xtask soak`"
        );
    }
    build(false)?;
    step(&format!("soak: {minutes} minutes of mixed traffic"));
    status(
        cargo()
            .args([
                "test",
                "--package",
                "hairpin",
                "--features",
                "privileged-tests",
            ])
            .args(["--test", "privileged", "soak::soak", "--"])
            .args(["--ignored", "--exact", "--nocapture"])
            .env("HAIRPIN_EBPF_OBJ", ebpf_object())
            .env("HAIRPIN_SOAK_MINUTES", minutes.to_string()),
    )
}

fn test(filter: Option<&str>) -> Result<()> {
    if !is_root() {
        bail!(
            "the privileged tests need root (network namespaces, XDP, AF_XDP): \
             run `sudo -E cargo xtask test`, or `cargo test` for the unit tests alone"
        );
    }
    build(false)?;
    // One feature set for both runs, so the second reuses the first one's build.
    let suite = |what: &str, targets: &[&str]| {
        step(what);
        let mut cmd = cargo();
        cmd.arg("test")
            .args(["--package", "hairpin-common", "--package", "hairpin"])
            .args(["--package", "hairpin-bench", "--package", "hairpin-cni"])
            .args(["--package", "xtask"])
            .args(["--features", "hairpin/privileged-tests"])
            .args(targets)
            .env("HAIRPIN_EBPF_OBJ", ebpf_object());
        if let Some(filter) = filter {
            cmd.args(["--", filter]);
        }
        status(&mut cmd)
    };
    suite(
        "unit tests, and checks of contrib/ and deploy/",
        &[
            "--lib",
            "--bins",
            "--test",
            "contrib",
            "--test",
            "kubernetes",
        ],
    )?;
    if filter.is_none() {
        fuzz::run(fuzz::TEST_SECONDS, None)
            .context("the fuzz targets, briefly, from their saved corpora")?;
    }
    suite(
        "privileged integration tests (root, network namespaces)",
        &["--test", "privileged"],
    )?;
    if filter.is_none() {
        setup::bench_peers();
        let out = env::temp_dir().join(format!("hairpin-bench-quick-{}", std::process::id()));
        let result = bench(
            true,
            &[
                "--out".into(),
                out.to_string_lossy().into_owned(),
                "--check".into(),
            ],
        );
        let _ = std::fs::remove_dir_all(&out);
        result.context("the quick benchmark (checks the harness and its report, not the speed)")?;
    }
    Ok(())
}
