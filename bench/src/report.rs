//! The run's results: the Markdown tables printed as each part finishes, the JSON
//! report (`--json`, `--out`), the charts ([`charts`] draws them), and the `--check`
//! that reads them back.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::{
    Args, charts,
    devices::Dut,
    harness::{Cores, Generator, loss, median},
    rfc2544::{Results, STANDARD_MAX},
    rfc2889::{self, Findings},
};

/// Per frame size, each device's latency histogram (rounds merged).
type LatencyBySize = Vec<(usize, Vec<(Dut, hdrhistogram::Histogram<u64>)>)>;

/// What the report and the charts say, gathered as the run goes.
pub struct Report {
    /// Per size and device: the medians over the rounds.
    summary: Vec<serde_json::Value>,
    /// Per learning switch: RFC 2889's findings.
    rfc2889: Vec<serde_json::Value>,
    /// For the charts: zero-loss Mpps by size, per device.
    throughput: Vec<(Dut, Vec<(usize, f64)>)>,
    /// For the charts: each size's latency histograms (rounds merged), per device.
    latencies: LatencyBySize,
}

impl Report {
    /// An empty report on `devices`.
    pub fn new(devices: &[Dut]) -> Self {
        Self {
            summary: Vec::new(),
            rfc2889: Vec::new(),
            throughput: devices.iter().map(|&d| (d, Vec::new())).collect(),
            latencies: Vec::new(),
        }
    }

    /// Prints the table of one frame size's results (medians over the rounds) and
    /// records them.
    ///
    /// A device is marked generator-bound when it took all the generator offered under
    /// overload (lost no more than `loss_tolerance` percent) or forwarded as much as the
    /// direct path: its figure is the generator's limit, a floor for the device's.
    pub fn add_size(
        &mut self,
        size: usize,
        results: &Results,
        latency_load: f64,
        loss_tolerance: f64,
    ) -> Result<()> {
        println!();
        let load = (latency_load * 100.0).round();
        println!(
            "| {size} B | zero-loss Mpps (median) | Gbit/s at zero loss | under overload Mpps (median) | zero-loss by round | latency at {load}% p50 / p99 / p99.9 / max us (median) | ns per frame at zero loss, by core (median) |"
        );
        println!("| --- | ---: | ---: | ---: | --- | ---: | --- |");
        let zero_loss = |outcomes: &[crate::rfc2544::Outcome]| -> Vec<f64> {
            outcomes
                .iter()
                .filter_map(|o| o.zero_loss)
                .map(|r| r / 1e6)
                .collect()
        };
        let direct = results
            .iter()
            .find(|(d, _)| *d == Dut::Direct)
            .map(|(_, outcomes)| zero_loss(outcomes))
            .filter(|zero| !zero.is_empty())
            .map(|zero| median(zero.into_iter()));
        let mut bound_any = false;
        for (dut_kind, outcomes) in results {
            let overload = median(outcomes.iter().map(|o| o.overload.mpps()));
            let zero = zero_loss(outcomes);
            let zero_median = (!zero.is_empty()).then(|| median(zero.iter().copied()));
            let overload_loss = median(outcomes.iter().map(|o| loss(&o.overload)));
            let generator_bound = *dut_kind != Dut::Direct
                && (overload_loss <= loss_tolerance
                    || matches!((zero_median, direct), (Some(z), Some(d)) if z >= d));
            bound_any |= generator_bound;
            let each: Vec<String> = zero.iter().map(|r| format!("{r:.3}")).collect();
            let fmt = |v: Option<f64>, digits: usize| {
                v.map_or("n/a".to_owned(), |v| format!("{v:.digits$}"))
            };
            // Line rate counts the frame, its FCS, preamble and inter-frame gap: 20 bytes more.
            let gbps = zero_median.map(|m| m * 1e6 * (size + 20) as f64 * 8.0 / 1e9);
            // Each percentile's median over the rounds.
            let pct = |q: Option<f64>| {
                let values: Vec<f64> = outcomes
                    .iter()
                    .filter(|o| !o.at_load.latency.is_empty())
                    .map(|o| {
                        let h = &o.at_load.latency;
                        q.map_or(h.max(), |q| h.value_at_quantile(q)) as f64 / 1e3
                    })
                    .collect();
                (!values.is_empty()).then(|| median(values.into_iter()))
            };
            let latency = [pct(Some(0.5)), pct(Some(0.99)), pct(Some(0.999)), pct(None)];
            if let (Some(m), Some((_, points))) = (
                zero_median,
                self.throughput.iter_mut().find(|(d, _)| d == dut_kind),
            ) {
                points.push((size, m));
            }
            let mut merged = hdrhistogram::Histogram::new(3)?;
            for o in outcomes {
                merged.add(&o.at_load.latency)?;
            }
            match self.latencies.last_mut() {
                Some((s, per_device)) if *s == size => per_device.push((*dut_kind, merged)),
                _ => self.latencies.push((size, vec![(*dut_kind, merged)])),
            }
            let per_core = per_core_median(outcomes);
            let cores = self::per_core(&per_core);
            println!(
                "| {}{} | {} | {} | {overload:.3} | {} | {} | {} |",
                dut_kind.name(),
                if generator_bound { " ‡" } else { "" },
                fmt(zero_median, 3),
                fmt(gbps, 2),
                each.join(", "),
                latency.map(|v| fmt(v, 1)).join(" / "),
                cores,
            );
            self.summary.push(serde_json::json!({
                "size": size,
                "device": dut_kind.name(),
                "zero_loss_mpps_median": zero_median,
                "overload_mpps_median": overload,
                "zero_loss_mpps_by_round": zero,
                "overload_loss_percent_median": overload_loss,
                "generator_bound": generator_bound,
                "latency_load": latency_load,
                "latency_us_median": {
                    "p50": latency[0], "p99": latency[1], "p99.9": latency[2], "max": latency[3],
                },
                "ns_per_frame_at_zero_loss_by_core": per_core
                    .iter()
                    .map(|(core, ns)| (core.to_string(), serde_json::json!(ns)))
                    .collect::<serde_json::Map<_, _>>(),
            }));
        }
        if bound_any {
            println!();
            println!(
                "‡ generator-bound: took all the generator offered under overload, or as much as the direct path; the figure is the generator's limit, a floor for the device's."
            );
        }
        println!();
        Ok(())
    }

    /// Records RFC 2889's findings on each learning switch and prints their table;
    /// `steps` is `--rfc2889-steps`, which bounds the capacity search.
    pub fn add_rfc2889(&mut self, rows: &[(Dut, Findings)], steps: u32) {
        for (kind, f) in rows {
            self.rfc2889.push(serde_json::json!({
                "lossy_trials": f.lossy,
                "device": kind.name(),
                "address_caching_capacity": f.capacity,
                "learning_rate_per_s": f.learning_rate.map(|(r, _)| r),
                "learning_rate_addresses": f.learning_rate.map(|(_, n)| n),
                "broadcast_zero_loss_mpps": f.broadcast_zero_loss.map(|r| r / 1e6),
                "broadcast_overload_mpps": f.broadcast_overload / 1e6,
                "broadcast_ns_per_copy_at_zero_loss_by_core": f.broadcast_ns
                    .iter()
                    .map(|(core, ns)| (core.to_string(), serde_json::json!(ns)))
                    .collect::<serde_json::Map<_, _>>(),
            }));
        }
        println!();
        println!(
            "| RFC 2889, 64 B | address caching capacity | learning rate (M addresses/s) | broadcast zero-loss Mpps (to 2 ports) | busy ns per copy, by core | broadcast under overload Mpps |"
        );
        println!("| --- | ---: | ---: | ---: | --- | ---: |");
        for (kind, f) in rows {
            let opt = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
            // Within one step of the search's top: the table holds at least that much.
            let top = rfc2889::MAX_ADDRESSES - (rfc2889::MAX_ADDRESSES >> steps);
            println!(
                "| {} | {} | {} | {} | {} | {:.3} |",
                kind.name(),
                f.capacity.map_or("n/a".to_owned(), |c| if c >= top {
                    format!("≥ {c} (the search's limit)")
                } else {
                    c.to_string()
                }),
                opt(f.learning_rate.map(|(r, _)| r / 1e6)),
                opt(f.broadcast_zero_loss.map(|r| r / 1e6)),
                per_core(&f.broadcast_ns),
                f.broadcast_overload / 1e6
            );
        }
        println!();
    }

    /// Writes the charts (with `--out`) and the JSON report with every trial in
    /// `trials` (`--json`, else `report.json` in `--out`); with `--check`, reads them
    /// back.
    pub fn write(
        &self,
        args: &Args,
        cores: Cores,
        devices: &[Dut],
        sizes: &[usize],
        generator: &Generator,
        trials: &[serde_json::Value],
    ) -> Result<()> {
        let mut json = args.json.clone();
        if let Some(dir) = &args.out {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            json.get_or_insert_with(|| dir.join("report.json"));
            match draw_charts(dir, &self.throughput, &self.latencies, args.latency_load) {
                Ok(files) => {
                    for file in &files {
                        println!("hairpin-bench: chart {}", file.display());
                    }
                    if args.check {
                        check_charts(&files)?;
                    }
                }
                Err(e) if args.check => return Err(e.context("drawing the charts")),
                Err(e) => println!("hairpin-bench: no charts: {e:#}"),
            }
        }
        if let Some(path) = &json {
            let report = serde_json::json!({
                "machine": machine(),
                "generator": generator.kind.name(),
                "generator_fallback": generator.fallback,
                "generator_core": cores.generator,
                "forwarder_core": cores.forwarder,
                "napi": args.napi.name(),
                "rounds": args.rounds,
                "trial_seconds": args.seconds,
                "search_steps": args.search_steps,
                "loss_tolerance_percent": args.loss_tolerance,
                "hairpin_args": args.hairpin_args,
                "idle_ports": args.idle_ports,
                "capture": args.capture,
                "summary": self.summary,
                "rfc2889": self.rfc2889,
                "trials": trials,
            });
            std::fs::write(path, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("hairpin-bench: every trial written to {}", path.display());
            if args.check {
                // Every device at every size, but jumbo sizes only where it carries them.
                let measured: Vec<(&str, usize)> = sizes
                    .iter()
                    .flat_map(|&size| {
                        devices
                            .iter()
                            .filter(move |d| size <= STANDARD_MAX || d.carries_jumbo())
                            .map(move |d| (d.name(), size))
                    })
                    .collect();
                check_report(path, &measured)?;
                println!("hairpin-bench: report checked: well-formed");
            }
        }
        Ok(())
    }
}

/// Draws the run's charts into `dir`; returns the files written.
fn draw_charts(
    dir: &Path,
    throughput: &[(Dut, Vec<(usize, f64)>)],
    latencies: &LatencyBySize,
    load: f64,
) -> Result<Vec<PathBuf>> {
    charts::init_font()?;
    let mut files = Vec::new();
    let series: Vec<_> = throughput
        .iter()
        .filter(|(_, points)| !points.is_empty())
        .map(|(d, points)| charts::Series {
            name: d.name(),
            data: points.clone(),
        })
        .collect();
    let path = dir.join("throughput.png");
    charts::throughput(&path, &series)?;
    files.push(path);
    for (size, per_device) in latencies {
        let series: Vec<_> = per_device
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(d, h)| charts::Series {
                name: d.name(),
                data: h,
            })
            .collect();
        let path = dir.join(format!("latency-{size}.png"));
        let title = format!(
            "One-way latency, {size}-byte frames at {:.0} % of each device's zero-loss rate",
            load * 100.0
        );
        charts::latency(&path, &title, &series)?;
        files.push(path);
    }
    Ok(files)
}

/// Checks that every chart is a PNG of some substance.
fn check_charts(files: &[PathBuf]) -> Result<()> {
    const PNG: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    if files.is_empty() {
        bail!("no charts were drawn");
    }
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        if !bytes.starts_with(&PNG) || bytes.len() < 4096 {
            bail!("{} is not a PNG chart", file.display());
        }
    }
    Ok(())
}

/// Reads the JSON report at `path` back and checks its shape (see `--check`).
fn check_report(path: &Path, measured: &[(&str, usize)]) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let figure = |v: &serde_json::Value, what: &str| -> Result<f64> {
        match v.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => bail!("{what}: {v} is not a finite non-negative number"),
        }
    };
    if !report["generator"]
        .as_str()
        .is_some_and(|g| ["live-frames", "fanout", "af-xdp"].contains(&g))
    {
        bail!(
            "the report does not name its generator: {}",
            report["generator"]
        );
    }
    let summary = report["summary"].as_array().context("no summary array")?;
    for &(device, size) in measured {
        let entry = summary
            .iter()
            .find(|e| e["device"] == device && e["size"] == size)
            .with_context(|| format!("no summary for {device} at {size} B"))?;
        let what = format!("{device} at {size} B");
        let overload = figure(&entry["overload_mpps_median"], &what)?;
        if overload == 0.0 {
            bail!("{what}: forwarded nothing under overload");
        }
        if !entry["zero_loss_mpps_median"].is_null() {
            figure(&entry["zero_loss_mpps_median"], &what)?;
        }
        for p in ["p50", "p99", "p99.9", "max"] {
            figure(
                &entry["latency_us_median"][p],
                &format!("{what}: latency {p}"),
            )?;
        }
        let bound = entry["generator_bound"]
            .as_bool()
            .with_context(|| format!("{what}: generator_bound missing"))?;
        // The direct path is the ceiling: a device above it must say it is
        // generator-bound.
        let direct = summary
            .iter()
            .find(|e| e["device"] == Dut::Direct.name() && e["size"] == size)
            .and_then(|e| e["zero_loss_mpps_median"].as_f64());
        if let (Some(d), Some(z)) = (direct, entry["zero_loss_mpps_median"].as_f64())
            && z > d
            && !bound
        {
            bail!(
                "{what}: {z:.3} Mpps, above the direct path's {d:.3}, yet not marked generator-bound"
            );
        }
    }
    let trials = report["trials"].as_array().context("no trials array")?;
    if trials.len() < measured.len() * 2 {
        bail!(
            "{} trials, fewer than two per device and size",
            trials.len()
        );
    }
    for trial in trials {
        for key in [
            "sent",
            "received",
            "seconds",
            "offered_mpps",
            "delivered_mpps",
        ] {
            figure(&trial[key], key)?;
        }
    }
    for key in ["kernel", "cpu"] {
        if !report["machine"][key].is_string() {
            bail!("machine.{key} missing");
        }
    }
    Ok(())
}

/// What the report says of the machine it ran on.
fn machine() -> serde_json::Value {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned());
    serde_json::json!({
        "kernel": read("/proc/sys/kernel/osrelease"),
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "hairpin_bench": env!("CARGO_PKG_VERSION"),
    })
}

/// Each core's busy time per frame at the zero-loss rate, the median over the rounds
/// that found one: (core, ns), by core.
/// Each core's busy ns per frame, as `core 0: 120, core 1: 35` (`n/a`: none measured).
pub fn per_core(ns: &[(usize, f64)]) -> String {
    if ns.is_empty() {
        return "n/a".to_owned();
    }
    ns.iter()
        .map(|(core, ns)| format!("core {core}: {ns:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn per_core_median(outcomes: &[crate::rfc2544::Outcome]) -> Vec<(usize, f64)> {
    let mut cores: Vec<usize> = outcomes
        .iter()
        .flat_map(|o| o.zero_loss_ns.iter().map(|&(core, _)| core))
        .collect();
    cores.sort_unstable();
    cores.dedup();
    cores
        .into_iter()
        .map(|core| {
            let ns = outcomes.iter().filter_map(|o| {
                o.zero_loss_ns
                    .iter()
                    .find(|&&(c, _)| c == core)
                    .map(|&(_, ns)| ns)
            });
            (core, median(ns))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report on one device at one size, as `write` lays it out.
    fn report() -> serde_json::Value {
        let trial = serde_json::json!({
            "sent": 1000, "received": 1000, "seconds": 0.5,
            "offered_mpps": 0.002, "delivered_mpps": 0.002,
        });
        serde_json::json!({
            "machine": { "kernel": "6.1.0", "cpu": "some CPU" },
            "generator": "fanout",
            "summary": [{
                "size": 64,
                "device": "hairpin xconnect",
                "zero_loss_mpps_median": null,
                "overload_mpps_median": 1.5,
                "generator_bound": false,
                "latency_us_median": { "p50": 10.0, "p99": 20.0, "p99.9": 30.0, "max": 40.0 },
            }],
            "trials": [trial.clone(), trial],
        })
    }

    fn check(report: &serde_json::Value) -> Result<()> {
        let path = std::env::temp_dir().join(format!(
            "hairpin-bench-check-{}-{:?}.json",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, report.to_string())?;
        let result = check_report(&path, &[("hairpin xconnect", 64)]);
        std::fs::remove_file(&path)?;
        result
    }

    #[test]
    fn a_well_formed_report_passes() {
        check(&report()).unwrap();
    }

    #[test]
    fn a_device_missing_or_idle_fails() {
        let mut missing = report();
        missing["summary"][0]["size"] = 128.into();
        assert!(check(&missing).is_err());
        let mut idle = report();
        idle["summary"][0]["overload_mpps_median"] = 0.0.into();
        assert!(check(&idle).is_err());
    }

    #[test]
    fn a_device_above_the_direct_path_must_say_it_is_generator_bound() {
        let mut r = report();
        let mut direct = r["summary"][0].clone();
        direct["device"] = Dut::Direct.name().into();
        direct["zero_loss_mpps_median"] = 2.0.into();
        r["summary"].as_array_mut().unwrap().push(direct);
        r["summary"][0]["zero_loss_mpps_median"] = 2.5.into();
        assert!(check(&r).is_err(), "above the ceiling, unmarked");
        r["summary"][0]["generator_bound"] = true.into();
        check(&r).unwrap();
        r["summary"][0]["generator_bound"] = serde_json::Value::Null;
        assert!(check(&r).is_err(), "the mark is required");
    }

    #[test]
    fn a_report_must_name_its_generator() {
        let mut r = report();
        r["generator"] = "Auto".into();
        assert!(check(&r).is_err());
    }

    #[test]
    fn a_bad_figure_fails() {
        let mut no_latency = report();
        no_latency["summary"][0]["latency_us_median"]["p99"] = serde_json::Value::Null;
        assert!(check(&no_latency).is_err());
        let mut negative = report();
        negative["trials"][1]["received"] = (-1).into();
        assert!(check(&negative).is_err());
        let mut one_trial = report();
        one_trial["trials"].as_array_mut().unwrap().pop();
        assert!(check(&one_trial).is_err());
    }
}
