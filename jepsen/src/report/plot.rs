//! Two SVG plots per run, with every fault window shaded and labelled by kind:
//! `latency.svg` (each call's latency against its start, by outcome, log scale) and
//! `throughput.svg` (calls per second, acknowledged by workload, failed and indeterminate
//! for all workloads together).
//!
//! SVG only: plotters writes text as `<text>` elements, so no font library is needed. Draws;
//! never judges.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::history::Outcome;
use crate::nemesis::{FaultKind, FaultRecord};
use crate::workload::Sample;

/// Points drawn at most in the latency plot: past it, acknowledged calls are thinned evenly
/// (failed and indeterminate ones are always drawn), so the SVG stays a few MB.
pub const LATENCY_POINTS_MAX: usize = 20_000;
const SIZE: (u32, u32) = (1400, 560);
const BUCKET_NS: u64 = 1_000_000_000;

/// Writes `latency.svg` and `throughput.svg` into `out_dir`.
pub fn write(out_dir: &Path, samples: &[Sample], faults: &[FaultRecord]) -> anyhow::Result<()> {
    let end_ns = samples.iter().map(|sample| sample.return_ns).chain(faults.iter().map(|fault| fault.end_ns)).max();
    let end_s = seconds(end_ns.unwrap_or(0)).max(1.0);
    latency(&out_dir.join("latency.svg"), samples, faults, end_s)?;
    throughput(&out_dir.join("throughput.svg"), samples, faults, end_s)?;
    Ok(())
}

fn latency(path: &Path, samples: &[Sample], faults: &[FaultRecord], end_s: f64) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let latency_ms = |sample: &Sample| (sample.return_ns.saturating_sub(sample.call_ns) as f64 / 1e6).max(0.01);
    let max_ms = samples.iter().map(latency_ms).fold(1.0, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency of every call, by outcome (fault windows shaded)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end_s, (0.01..max_ms).log_scale())
        .map_err(plot_error)?;
    chart.configure_mesh().x_desc("time since start (s)").y_desc("latency (ms)").draw().map_err(plot_error)?;
    shade_faults(&mut chart, faults, 0.01, max_ms)?;
    let ok_total = samples.iter().filter(|sample| sample.outcome == Outcome::Ok).count();
    let stride = ok_total.div_ceil(LATENCY_POINTS_MAX).max(1);
    for (outcome, color) in [
        (Outcome::Ok, GREEN.mix(0.5)),
        (Outcome::Fail, RGBColor(230, 140, 0).mix(0.9)),
        (Outcome::Indeterminate, RED.mix(0.9)),
    ] {
        let points: Vec<(f64, f64)> = samples
            .iter()
            .filter(|sample| sample.outcome == outcome)
            .enumerate()
            .filter(|(index, _)| outcome != Outcome::Ok || index % stride == 0)
            .map(|(_, sample)| (seconds(sample.call_ns), latency_ms(sample)))
            .collect();
        let label = format!("{outcome} ({})", samples.iter().filter(|sample| sample.outcome == outcome).count());
        chart
            .draw_series(points.into_iter().map(|point| Circle::new(point, 2, color.filled())))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
    }
    legend(&mut chart)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn throughput(path: &Path, samples: &[Sample], faults: &[FaultRecord], end_s: f64) -> anyhow::Result<()> {
    let buckets = (end_s.ceil() as usize).max(1);
    let mut series: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for sample in samples {
        let name = match sample.outcome {
            Outcome::Ok => format!("{} ok", sample.workload.name()),
            Outcome::Fail => "fail (all)".to_string(),
            Outcome::Indeterminate => "indeterminate (all)".to_string(),
        };
        let counts = series.entry(name).or_insert_with(|| vec![0; buckets]);
        let bucket = usize::try_from(sample.return_ns / BUCKET_NS).unwrap_or(usize::MAX).min(buckets - 1);
        counts[bucket] += 1;
    }
    let max_rate = series.values().flatten().copied().max().unwrap_or(1).max(1) as f64 * 1.15;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Calls per second, by workload and outcome (fault windows shaded)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end_s, 0.0..max_rate)
        .map_err(plot_error)?;
    chart.configure_mesh().x_desc("time since start (s)").y_desc("calls / s").draw().map_err(plot_error)?;
    shade_faults(&mut chart, faults, 0.0, max_rate)?;
    for (index, (name, counts)) in series.iter().enumerate() {
        let color = series_color(name, index);
        let points = counts.iter().enumerate().map(|(bucket, &count)| (bucket as f64 + 0.5, count as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    legend(&mut chart)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

type Chart<'a, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>;

/// One translucent band per fault, one legend entry per kind.
fn shade_faults<Y>(chart: &mut Chart<'_, Y>, faults: &[FaultRecord], y_min: f64, y_max: f64) -> anyhow::Result<()>
where
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    let mut kinds: Vec<FaultKind> = faults.iter().map(|fault| fault.kind).collect();
    kinds.sort_by_key(|kind| format!("{kind:?}"));
    kinds.dedup();
    for kind in kinds {
        let color = fault_color(kind);
        let bands: Vec<_> = faults
            .iter()
            .filter(|fault| fault.kind == kind)
            .map(|fault| {
                Rectangle::new(
                    [(seconds(fault.start_ns), y_min), (seconds(fault.end_ns), y_max)],
                    color.mix(0.18).filled(),
                )
            })
            .collect();
        chart
            .draw_series(bands)
            .map_err(plot_error)?
            .label(fault_name(kind))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], color.mix(0.4).filled()));
    }
    Ok(())
}

fn legend<Y>(chart: &mut Chart<'_, Y>) -> anyhow::Result<()>
where
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

fn fault_name(kind: FaultKind) -> String {
    // serde's kebab-case name, as in faults.json.
    serde_json::to_value(kind).ok().and_then(|value| value.as_str().map(str::to_string)).unwrap_or_default()
}

fn fault_color(kind: FaultKind) -> RGBColor {
    match kind {
        FaultKind::Kill => RGBColor(220, 40, 40),
        FaultKind::KillAll => RGBColor(120, 0, 0),
        FaultKind::Restart => RGBColor(240, 150, 20),
        FaultKind::Member => RGBColor(30, 160, 120),
        FaultKind::Pause => RGBColor(40, 90, 220),
        FaultKind::PartitionLeader => RGBColor(150, 40, 180),
        FaultKind::PartitionSplit => RGBColor(200, 60, 160),
        FaultKind::PartitionInbound => RGBColor(40, 160, 160),
        FaultKind::PartitionOutbound => RGBColor(100, 120, 40),
    }
}

fn series_color(name: &str, index: usize) -> RGBColor {
    match name {
        "fail (all)" => RGBColor(230, 140, 0),
        "indeterminate (all)" => RGBColor(220, 0, 0),
        _ => {
            const PALETTE: [RGBColor; 5] = [
                RGBColor(0, 130, 60),
                RGBColor(30, 100, 200),
                RGBColor(120, 60, 160),
                RGBColor(0, 150, 150),
                RGBColor(90, 90, 90),
            ];
            PALETTE[index % PALETTE.len()]
        }
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(error: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Workload;

    #[test]
    fn plots_are_svg_with_faults_and_outcomes() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let samples: Vec<Sample> = (0..200u64)
            .map(|index| Sample {
                workload: if index % 2 == 0 { Workload::Register } else { Workload::Set },
                call_ns: index * 20_000_000,
                return_ns: index * 20_000_000 + 3_000_000,
                outcome: if index % 50 == 0 { Outcome::Indeterminate } else { Outcome::Ok },
            })
            .collect();
        let faults = vec![FaultRecord {
            kind: FaultKind::PartitionLeader,
            members: vec!["n1".into()],
            on_leader: true,
            links: vec![["n1".into(), "n0".into()]],
            start_ns: 1_000_000_000,
            end_ns: 2_500_000_000,
        }];
        write(dir.path(), &samples, &faults).expect("plots are written");
        for name in ["latency.svg", "throughput.svg"] {
            let svg = std::fs::read_to_string(dir.path().join(name)).expect("the plot exists");
            assert!(svg.starts_with("<svg"), "{name}: {}", &svg[..svg.len().min(100)]);
            assert!(svg.contains("partition-leader"), "{name} has no fault legend");
        }
        let throughput = std::fs::read_to_string(dir.path().join("throughput.svg")).expect("the plot exists");
        assert!(throughput.contains("register ok") && throughput.contains("indeterminate (all)"));
    }
}
