//! PNG charts of a run (plotters, bitmap backend): throughput against frame size per
//! device, and each device's latency percentile curve.
//!
//! Text needs a TrueType font; DejaVu Sans (Debian `fonts-dejavu-core`, which `cargo
//! xtask bench` installs) is looked for where Debian puts it.
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use plotters::prelude::*;

const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers the font plotters draws text with; call once before drawing.
pub fn init_font() -> Result<()> {
    let path = FONT_PATHS
        .iter()
        .find(|p| Path::new(p).exists())
        .context("no DejaVu Sans font (Debian fonts-dejavu-core) to draw the charts' text")?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    // plotters keeps the font for the rest of the process.
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(bytes.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{path} is not a usable TrueType font"))?;
    Ok(())
}

/// One device's points.
pub struct Series<'a, T> {
    /// The device.
    pub name: &'a str,
    /// Its data.
    pub data: T,
}

fn color(i: usize) -> RGBColor {
    // One colour per device (14): the last three are the fast-path devices'.
    const PALETTE: [RGBColor; 14] = [
        RGBColor(0, 0, 0),
        RGBColor(128, 128, 128),
        RGBColor(31, 119, 180),
        RGBColor(23, 190, 207),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(227, 119, 194),
        RGBColor(188, 189, 34),
        RGBColor(0, 90, 50),
        RGBColor(120, 0, 120),
        RGBColor(0, 0, 160),
    ];
    PALETTE[i % PALETTE.len()]
}

fn draw_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}

/// Draws the legend at `position` and writes the file.
fn finish<'a, X, Y>(
    mut chart: ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    root: &DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)?;
    root.present().map_err(draw_error)?;
    Ok(())
}

/// Zero-loss Mpps against frame size, one line per device.
pub fn throughput(path: &Path, series: &[Series<'_, Vec<(usize, f64)>>]) -> Result<()> {
    let sizes: Vec<usize> = series
        .iter()
        .flat_map(|s| s.data.iter().map(|&(size, _)| size))
        .collect();
    let (Some(&min), Some(&max)) = (sizes.iter().min(), sizes.iter().max()) else {
        bail!("no throughput figures to chart");
    };
    let top = series
        .iter()
        .flat_map(|s| s.data.iter().map(|&(_, m)| m))
        .fold(0.0f64, f64::max)
        * 1.1;
    let root = BitMapBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Zero-loss throughput by frame size (RFC 2544)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (min as f64 * 0.9..max as f64 * 1.1).log_scale(),
            0.0..top.max(0.1),
        )
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("frame size (bytes, FCS included)")
        .y_desc("Mpps")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(draw_error)?;
    for (i, s) in series.iter().enumerate() {
        let style = color(i).stroke_width(2);
        let points: Vec<(f64, f64)> = s.data.iter().map(|&(x, y)| (x as f64, y)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(draw_error)?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color(i).filled())),
            )
            .map_err(draw_error)?;
    }
    finish(chart, &root, SeriesLabelPosition::UpperRight)
}

/// Latency (µs, log scale) against percentile on a "nines" scale (90 %, 99 %, 99.9 %,
/// ...), one curve per device.
pub fn latency(path: &Path, title: &str, series: &[Series<'_, &Histogram<u64>>]) -> Result<()> {
    // Points from the median to 99.99 %, evenly spaced in nines.
    let nines: Vec<f64> = (3..=40).map(|k| f64::from(k) / 10.0).collect();
    let curves: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            nines
                .iter()
                .filter(|&&n| !s.data.is_empty() && 10f64.powf(-n) * s.data.len() as f64 >= 1.0)
                .map(|&n| {
                    let q = 1.0 - 10f64.powf(-n);
                    (n, (s.data.value_at_quantile(q) as f64 / 1e3).max(0.01))
                })
                .collect()
        })
        .collect();
    let values = curves.iter().flatten().map(|&(_, y)| y);
    let (low, high) = values.fold((f64::MAX, 0.0f64), |(l, h), y| (l.min(y), h.max(y)));
    if high == 0.0 {
        bail!("no latency samples to chart");
    }
    let root = BitMapBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.3f64..4.0, (low * 0.8..high * 1.25).log_scale())
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("one-way latency (µs)")
        .x_label_formatter(&|n| {
            let p = 100.0 * (1.0 - 10f64.powf(-n));
            format!("{p:.2}%")
        })
        .draw()
        .map_err(draw_error)?;
    for (i, (s, points)) in series.iter().zip(curves).enumerate() {
        let style = color(i).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points, style))
            .map_err(draw_error)?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    finish(chart, &root, SeriesLabelPosition::UpperLeft)
}
