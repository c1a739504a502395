//! The comparison plot: one panel per workload, grouped bars of median ops/s per client count,
//! etcd beside Keel, the Keel/etcd ratio above each pair. SVG, so no font is rasterised and no
//! system font library is needed.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::ComparisonLine;
use crate::workload::Workload;

const WIDTH: u32 = 960;
const PANEL_HEIGHT: u32 = 320;
const HEADER_HEIGHT: u32 = 56;
/// Room above the tallest bar for its ratio label.
const HEADROOM: f64 = 1.2;
const ETCD_COLOR: RGBColor = RGBColor(0x41, 0x6e, 0xb4);
const KEEL_COLOR: RGBColor = RGBColor(0xe0, 0x7b, 0x39);

/// The plot's path when none is given: the JSON file's, with the extension `.svg`.
pub fn default_path(json: &Path) -> PathBuf {
    json.with_extension("svg")
}

/// Writes the plot of `lines` to `path`.
pub fn write_svg(path: &Path, lines: &[ComparisonLine]) -> anyhow::Result<()> {
    let mut workloads: Vec<Workload> = Vec::new();
    for line in lines {
        if !workloads.contains(&line.workload) {
            workloads.push(line.workload);
        }
    }
    anyhow::ensure!(!workloads.is_empty(), "nothing to plot");
    let height = HEADER_HEIGHT + PANEL_HEIGHT * u32::try_from(workloads.len()).unwrap_or(1);
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (header, body) = root.split_vertically(HEADER_HEIGHT);
    draw_legend(&header)?;
    let panels = body.split_evenly((workloads.len(), 1));
    for (panel, workload) in panels.iter().zip(&workloads) {
        let mine: Vec<&ComparisonLine> = lines.iter().filter(|l| l.workload == *workload).collect();
        draw_panel(panel, *workload, &mine)?;
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

/// One legend for every panel, above them, where it can never cover a bar.
fn draw_legend(header: &Area) -> anyhow::Result<()> {
    let font = ("sans-serif", 16).into_font();
    let title = "keel-bench: median ops/s, etcd against Keel (ratio above each pair: Keel/etcd)";
    header.draw(&Text::new(title, (20, 10), font.clone())).map_err(plot_error)?;
    for (i, (name, color)) in [("etcd", ETCD_COLOR), ("keel", KEEL_COLOR)].into_iter().enumerate() {
        let x = 20 + 90 * i32::try_from(i).unwrap_or(0);
        header.draw(&Rectangle::new([(x, 34), (x + 14, 48)], color.filled())).map_err(plot_error)?;
        header.draw(&Text::new(name, (x + 20, 33), font.clone())).map_err(plot_error)?;
    }
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw_panel(panel: &Area, workload: Workload, lines: &[&ComparisonLine]) -> anyhow::Result<()> {
    let groups = lines.len();
    let ops = |line: &ComparisonLine| (line.baseline.ops_per_s.unwrap_or(0.0), line.candidate.ops_per_s.unwrap_or(0.0));
    let tallest = lines.iter().map(|l| ops(l).0.max(ops(l).1)).fold(0.0, f64::max);
    let y_max = (tallest * HEADROOM).max(1.0);
    let labels: Vec<String> =
        lines.iter().map(|l| format!("{} client{}", l.clients, if l.clients == 1 { "" } else { "s" })).collect();
    let mut chart = ChartBuilder::on(panel)
        .caption(format!("{}: one op = {}", workload.name(), workload.operation()), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..groups as f64, 0f64..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .y_desc("ops/s")
        .y_label_formatter(&|y| format!("{y:.0}"))
        // 2g+1 labels over 0..g make plotters pick a step of 0.5: a label at every group's
        // centre (x.5), and blank ones at the group edges.
        .x_labels(2 * groups + 1)
        .x_label_formatter(&|x| {
            let centre = (x.fract() - 0.5).abs() < 1e-6;
            if centre {
                labels.get(x.floor() as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(plot_error)?;
    let bars = |left: f64, right: f64, pick: fn((f64, f64)) -> f64, color: RGBColor| {
        lines.iter().enumerate().map(move |(g, l)| {
            Rectangle::new([(g as f64 + left, 0.0), (g as f64 + right, pick(ops(l)))], color.filled())
        })
    };
    chart.draw_series(bars(0.1, 0.48, |(etcd, _)| etcd, ETCD_COLOR)).map_err(plot_error)?;
    chart.draw_series(bars(0.52, 0.9, |(_, keel)| keel, KEEL_COLOR)).map_err(plot_error)?;
    let ratio_style = TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart
        .draw_series(lines.iter().enumerate().filter_map(|(g, l)| {
            let ratio = l.ops_ratio?;
            let top = ops(l).0.max(ops(l).1);
            Some(Text::new(format!("keel/etcd {ratio:.2}x"), (g as f64 + 0.5, top), ratio_style.clone()))
        }))
        .map_err(plot_error)?;
    Ok(())
}

/// plotters' errors borrow nothing but are generic over the backend; text is all we need.
fn plot_error<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Medians;

    fn line(workload: Workload, clients: usize, etcd: f64, keel: f64) -> ComparisonLine {
        let medians = |ops: f64| Medians { runs: 1, ops_per_s: Some(ops), ..Medians::default() };
        ComparisonLine {
            workload,
            clients,
            baseline: medians(etcd),
            candidate: medians(keel),
            ops_ratio: Some(keel / etcd),
            p50_ratio: None,
            p99_ratio: None,
            cpu_ratio: None,
        }
    }

    #[test]
    fn the_plot_is_an_svg_with_a_panel_per_workload() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.svg");
        let lines = [
            line(Workload::Put, 1, 100.0, 300.0),
            line(Workload::Put, 64, 1_000.0, 3_500.0),
            line(Workload::Range, 64, 5_000.0, 4_000.0),
        ];
        write_svg(&path, &lines).expect("plot written");
        let svg = std::fs::read_to_string(&path).expect("read");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for text in [
            "put: one op = put",
            "range: one op = linearizable get of one key",
            "\n1 client\n",
            "64 clients",
            "keel/etcd 3.50x",
            "keel/etcd 0.80x",
            "etcd",
            "keel",
        ] {
            assert!(svg.contains(text), "{text:?} missing");
        }
    }

    #[test]
    fn the_default_plot_sits_next_to_the_json() {
        assert_eq!(default_path(Path::new("/tmp/out.json")), PathBuf::from("/tmp/out.svg"));
    }
}
