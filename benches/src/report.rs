//! What keel-bench reports: one row per run, medians per system, the Keel/etcd comparison and
//! the resource figures, as text tables, markdown (benches/RESULTS.md) and JSON. Formatting
//! only: the numbers come from `stats`, and nothing here measures.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::resources::ResourceRow;
use crate::stats::{ratio, Medians, Summary};
use crate::workload::Workload;

/// The system compared against, and the one compared, in every ratio.
pub const BASELINE: &str = "etcd";
pub const CANDIDATE: &str = "keel";

/// One run of one workload on one system: a row of the JSON `rows`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub system: String,
    pub workload: Workload,
    pub clients: usize,
    pub connections: usize,
    pub run: usize,
    #[serde(flatten)]
    pub summary: Summary,
}

/// When, where and how the rows were measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub date_utc: String,
    pub machine: String,
    pub command: String,
    /// `system: version line` for each system measured.
    pub versions: Vec<String>,
    /// How the measurement was set up, in sentences.
    pub notes: Vec<String>,
}

/// Everything one keel-bench invocation measured: the JSON file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub meta: Meta,
    pub rows: Vec<Row>,
    pub resources: Vec<ResourceRow>,
}

/// Medians of both systems at one workload and client count, and their ratios.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComparisonLine {
    pub workload: Workload,
    pub clients: usize,
    pub baseline: Medians,
    pub candidate: Medians,
    /// candidate / baseline ops/s: above 1 is faster.
    pub ops_ratio: Option<f64>,
    /// candidate / baseline latency: below 1 is faster.
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    /// candidate / baseline members' CPU per operation: below 1 is cheaper.
    #[serde(default)]
    pub cpu_ratio: Option<f64>,
}

/// The (workload, clients) pairs of `rows`, in the order they first appear.
fn groups(rows: &[Row]) -> Vec<(Workload, usize)> {
    let mut seen = Vec::new();
    for row in rows {
        if !seen.contains(&(row.workload, row.clients)) {
            seen.push((row.workload, row.clients));
        }
    }
    seen
}

fn medians_of(rows: &[Row], system: &str, workload: Workload, clients: usize) -> Medians {
    Medians::of(
        rows.iter()
            .filter(|r| r.system == system && r.workload == workload && r.clients == clients)
            .map(|r| &r.summary),
    )
}

/// The comparison of `candidate` with `baseline` for every workload and client count.
pub fn compare(rows: &[Row], baseline: &str, candidate: &str) -> Vec<ComparisonLine> {
    groups(rows)
        .into_iter()
        .map(|(workload, clients)| {
            let base = medians_of(rows, baseline, workload, clients);
            let cand = medians_of(rows, candidate, workload, clients);
            ComparisonLine {
                workload,
                clients,
                ops_ratio: ratio(cand.ops_per_s, base.ops_per_s),
                p50_ratio: ratio(cand.p50_ms, base.p50_ms),
                p99_ratio: ratio(cand.p99_ms, base.p99_ms),
                cpu_ratio: ratio(cand.member_cpu_us_per_op, base.member_cpu_us_per_op),
                baseline: base,
                candidate: cand,
            }
        })
        .collect()
}

/// Whether `rows` hold both systems, so that a comparison means something.
pub fn has_both(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.system == BASELINE) && rows.iter().any(|r| r.system == CANDIDATE)
}

/// `medians over 3 runs each`, from the highest run number in `rows`.
pub fn medians_phrase(rows: &[Row]) -> String {
    match rows.iter().map(|r| r.run).max().unwrap_or(0) {
        1 => "medians over 1 run each".to_string(),
        runs => format!("medians over {runs} runs each"),
    }
}

fn num(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

fn times(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.2}x"))
}

/// One run, as printed when it completes.
pub fn run_line(row: &Row, runs: usize) -> String {
    let s = &row.summary;
    let cpu = s.member_cpu_us_per_op.map_or_else(String::new, |us| format!("  members' cpu {us:.0} µs/op"));
    format!(
        "{:<5} {:<18} clients {:>4}  run {}/{}  {:>9.0} ops/s  p50 {:>8.2}  p90 {:>8.2}  p99 {:>8.2}  p99.9 {:>8.2} ms  errors {}{cpu}",
        row.system, row.workload.name(), row.clients, row.run, runs, s.ops_per_s, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.errors
    )
}

/// A table given as a header and rows of cells: aligned text, or markdown.
pub struct Table {
    /// How many leading columns hold names (left-aligned in text); the rest hold numbers.
    pub name_columns: usize,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn text(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| self.rows.iter().map(|r| r[c].len()).chain([self.header[c].len()]).max().unwrap_or(0))
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(c, cell)| {
                    if c < self.name_columns {
                        format!("{cell:<w$}", w = widths[c])
                    } else {
                        format!("{cell:>w$}", w = widths[c])
                    }
                })
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut out = line(&self.header) + "\n";
        for row in &self.rows {
            out += &(line(row) + "\n");
        }
        out
    }

    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let rule: Vec<String> =
            (0..self.header.len()).map(|c| if c < self.name_columns { "---".into() } else { "---:".into() }).collect();
        let mut out = line(&self.header) + &line(&rule);
        for row in &self.rows {
            out += &line(row);
        }
        out
    }
}

fn cells(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// Keel against etcd: medians and ratios per workload and client count.
pub fn comparison_table(lines: &[ComparisonLine]) -> Table {
    let header = cells(&[
        "workload",
        "clients",
        "etcd ops/s",
        "keel ops/s",
        "ops keel/etcd",
        "etcd p50 ms",
        "keel p50 ms",
        "p50 keel/etcd",
        "etcd p99 ms",
        "keel p99 ms",
        "p99 keel/etcd",
        "etcd cpu us/op",
        "keel cpu us/op",
        "cpu keel/etcd",
    ]);
    let rows = lines
        .iter()
        .map(|l| {
            vec![
                l.workload.name().to_string(),
                l.clients.to_string(),
                num(l.baseline.ops_per_s, 0),
                num(l.candidate.ops_per_s, 0),
                times(l.ops_ratio),
                num(l.baseline.p50_ms, 2),
                num(l.candidate.p50_ms, 2),
                times(l.p50_ratio),
                num(l.baseline.p99_ms, 2),
                num(l.candidate.p99_ms, 2),
                times(l.p99_ratio),
                num(l.baseline.member_cpu_us_per_op, 0),
                num(l.candidate.member_cpu_us_per_op, 0),
                times(l.cpu_ratio),
            ]
        })
        .collect();
    Table { name_columns: 1, header, rows }
}

/// Medians per system, workload and client count (for one system, or more than two).
pub fn medians_table(rows: &[Row]) -> Table {
    let header = cells(&[
        "system",
        "workload",
        "clients",
        "runs",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "cpu us/op",
    ]);
    let mut systems: Vec<&str> = Vec::new();
    for row in rows {
        if !systems.contains(&row.system.as_str()) {
            systems.push(&row.system);
        }
    }
    let mut out = Vec::new();
    for (workload, clients) in groups(rows) {
        for system in &systems {
            let m = medians_of(rows, system, workload, clients);
            if m.runs == 0 {
                continue;
            }
            out.push(vec![
                system.to_string(),
                workload.name().to_string(),
                clients.to_string(),
                m.runs.to_string(),
                num(m.ops_per_s, 0),
                num(m.p50_ms, 2),
                num(m.p90_ms, 2),
                num(m.p99_ms, 2),
                num(m.p999_ms, 2),
                num(m.member_cpu_us_per_op, 0),
            ]);
        }
    }
    Table { name_columns: 2, header, rows: out }
}

/// Every run, in the order measured.
pub fn runs_table(rows: &[Row]) -> Table {
    let header = cells(&[
        "system",
        "workload",
        "clients",
        "run",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "cpu us/op",
    ]);
    let out = rows
        .iter()
        .map(|r| {
            let s = &r.summary;
            vec![
                r.system.clone(),
                r.workload.name().to_string(),
                r.clients.to_string(),
                r.run.to_string(),
                format!("{:.0}", s.ops_per_s),
                format!("{:.2}", s.p50_ms),
                format!("{:.2}", s.p90_ms),
                format!("{:.2}", s.p99_ms),
                format!("{:.2}", s.p999_ms),
                s.errors.to_string(),
                num(s.member_cpu_us_per_op, 0),
            ]
        })
        .collect();
    Table { name_columns: 2, header, rows: out }
}

/// Memory, disk and restart per system, with keel/etcd ratios of the means when both ran.
pub fn resources_table(resources: &[ResourceRow]) -> Table {
    let header = cells(&[
        "system",
        "keys",
        "RSS idle MiB (per member)",
        "RSS loaded MiB (per member)",
        "data dir MiB (per member)",
        "load s",
        "restart to healthy ms",
    ]);
    let per_member = |row: &ResourceRow, field: fn(&crate::resources::MemberResources) -> f64| {
        row.members.iter().map(|m| format!("{:.1}", field(m))).collect::<Vec<_>>().join(" / ")
    };
    let mut rows: Vec<Vec<String>> = resources
        .iter()
        .map(|r| {
            vec![
                r.system.name().to_string(),
                r.keys.to_string(),
                per_member(r, |m| m.rss_idle_mib),
                per_member(r, |m| m.rss_loaded_mib),
                per_member(r, |m| m.data_dir_mib),
                format!("{:.1}", r.load_s),
                format!("{:.0}", r.restart_to_healthy_ms),
            ]
        })
        .collect();
    let find = |name: &str| resources.iter().find(|r| r.system.name() == name);
    if let (Some(base), Some(cand)) = (find(BASELINE), find(CANDIDATE)) {
        let mean_ratio = |field: fn(&crate::resources::MemberResources) -> f64| {
            times(ratio(Some(cand.mean(field)), Some(base.mean(field))))
        };
        rows.push(vec![
            "keel/etcd".into(),
            String::new(),
            mean_ratio(|m| m.rss_idle_mib),
            mean_ratio(|m| m.rss_loaded_mib),
            mean_ratio(|m| m.data_dir_mib),
            times(ratio(Some(cand.load_s), Some(base.load_s))),
            times(ratio(Some(cand.restart_to_healthy_ms), Some(base.restart_to_healthy_ms))),
        ]);
    }
    Table { name_columns: 1, header, rows }
}

/// The whole report as markdown: the format of benches/RESULTS.md.
pub fn markdown(report: &Report) -> String {
    let meta = &report.meta;
    let mut out = String::from("# keel-bench results\n\n");
    out += "<!-- Written by keel-bench (--markdown); regenerate as README.md's Benchmarks section says rather than editing. -->\n\n";
    let _ = writeln!(out, "- Date: {}", meta.date_utc);
    let _ = writeln!(out, "- Machine: {}", meta.machine);
    for version in &meta.versions {
        let _ = writeln!(out, "- {version}");
    }
    let commands: Vec<&str> = meta.command.lines().collect();
    if let [command] = commands[..] {
        let _ = writeln!(out, "- Command: `{command}`");
    } else {
        out += "- Commands:\n";
        for command in commands {
            let _ = writeln!(out, "  - `{command}`");
        }
    }
    for note in &meta.notes {
        let _ = writeln!(out, "- {note}");
    }
    if has_both(&report.rows) {
        let _ = writeln!(out, "\n## Keel against etcd ({})\n", medians_phrase(&report.rows));
        out += &comparison_table(&compare(&report.rows, BASELINE, CANDIDATE)).markdown();
        out += "\nops keel/etcd above 1 means Keel is faster; latency keel/etcd below 1 means Keel is faster. \
                cpu us/op is the CPU time (user + system) all members of the system spent in the measured \
                window per operation: keel-bench shares the cores, so ops/s understates a difference in cost, \
                and cpu keel/etcd below 1 means Keel spends less.\n";
    } else if !report.rows.is_empty() {
        out += "\n## Medians\n\n";
        out += &medians_table(&report.rows).markdown();
    }
    if !report.resources.is_empty() {
        out += "\n## Memory, disk and restart\n\n";
        out += &resources_table(&report.resources).markdown();
    }
    if !report.rows.is_empty() {
        out += "\n## Every run\n\n";
        out += &runs_table(&report.rows).markdown();
        out += "\nWhat one operation is: ";
        let mut seen: Vec<Workload> = Vec::new();
        for row in &report.rows {
            if !seen.contains(&row.workload) {
                seen.push(row.workload);
            }
        }
        let explained: Vec<String> = seen.iter().map(|w| format!("{}: {}", w.name(), w.operation())).collect();
        out += &explained.join("; ");
        out += ".\n";
    }
    out
}

/// Several reports as one: every row and resource figure, the first report's date and
/// machine, every distinct command (one per line), version and note.
pub fn merge(reports: Vec<Report>) -> Report {
    let mut merged = Report::default();
    let mut commands: Vec<String> = Vec::new();
    for report in reports {
        if merged.meta.date_utc.is_empty() {
            merged.meta.date_utc = report.meta.date_utc.clone();
            merged.meta.machine = report.meta.machine.clone();
        }
        let distinct = |into: &mut Vec<String>, items: Vec<String>| {
            for item in items {
                if !into.contains(&item) {
                    into.push(item);
                }
            }
        };
        distinct(&mut commands, report.meta.command.lines().map(str::to_string).collect());
        distinct(&mut merged.meta.versions, report.meta.versions);
        distinct(&mut merged.meta.notes, report.meta.notes);
        merged.rows.extend(report.rows);
        merged.resources.extend(report.resources);
    }
    merged.meta.command = commands.join("\n");
    merged
}

pub fn write_json(path: &Path, report: &Report) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

pub fn write_markdown(path: &Path, report: &Report) -> anyhow::Result<()> {
    std::fs::write(path, markdown(report)).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system: &str, workload: Workload, clients: usize, run: usize, ops_per_s: f64, p99_ms: f64) -> Row {
        Row {
            system: system.into(),
            workload,
            clients,
            connections: clients,
            run,
            summary: Summary {
                ops: 10,
                errors: 0,
                duration_s: 10.0,
                ops_per_s,
                p50_ms: p99_ms / 4.0,
                p90_ms: p99_ms / 2.0,
                p99_ms,
                p999_ms: p99_ms * 2.0,
                max_ms: p99_ms * 3.0,
                member_cpu_us_per_op: Some(120.0),
            },
        }
    }

    fn three_runs_each() -> Vec<Row> {
        vec![
            row("etcd", Workload::Put, 64, 1, 1_000.0, 40.0),
            row("keel", Workload::Put, 64, 1, 3_300.0, 10.0),
            row("etcd", Workload::Put, 64, 2, 1_200.0, 30.0),
            row("keel", Workload::Put, 64, 2, 3_000.0, 12.0),
            row("etcd", Workload::Put, 64, 3, 900.0, 50.0),
            row("keel", Workload::Put, 64, 3, 3_600.0, 15.0),
        ]
    }

    #[test]
    fn a_row_serialises_flat_with_the_issues_field_names() {
        let json = serde_json::to_value(row("keel", Workload::RangeSerializable, 16, 2, 5.0, 8.0)).expect("json");
        for field in ["system", "workload", "clients", "run", "ops_per_s", "p50_ms", "p90_ms", "p99_ms", "p999_ms"] {
            assert!(json.get(field).is_some(), "{field} missing in {json}");
        }
        assert_eq!(json["workload"], "range-serializable");
        assert_eq!(json["clients"], 16);
        assert_eq!(json["p99_ms"], 8.0);
        let back: Row = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, row("keel", Workload::RangeSerializable, 16, 2, 5.0, 8.0));
    }

    #[test]
    fn comparison_takes_medians_then_ratios() {
        let lines = compare(&three_runs_each(), BASELINE, CANDIDATE);
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!((line.workload, line.clients), (Workload::Put, 64));
        assert_eq!(line.baseline.ops_per_s, Some(1_000.0));
        assert_eq!(line.candidate.ops_per_s, Some(3_300.0));
        assert_eq!(line.ops_ratio, Some(3.3));
        assert_eq!(line.p99_ratio, Some(12.0 / 40.0));
    }

    #[test]
    fn a_missing_system_gives_no_ratio() {
        let rows = vec![row("keel", Workload::Txn, 1, 1, 10.0, 1.0)];
        assert!(!has_both(&rows));
        let lines = compare(&rows, BASELINE, CANDIDATE);
        assert_eq!(lines[0].ops_ratio, None);
        assert!(comparison_table(&lines).text().contains('-'));
    }

    #[test]
    fn tables_align_in_text_and_markdown() {
        let table = comparison_table(&compare(&three_runs_each(), BASELINE, CANDIDATE));
        let text = table.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("put"), "{text}");
        assert!(lines[1].contains("3.30x"), "{text}");
        let markdown = table.markdown();
        assert!(markdown.starts_with("| workload | clients |"), "{markdown}");
        assert!(markdown.lines().nth(1).is_some_and(|rule| rule.starts_with("| --- | ---: |")), "{markdown}");
    }

    #[test]
    fn markdown_report_has_header_comparison_and_runs() {
        let report = Report {
            meta: Meta {
                date_utc: "2026-01-01 00:00 UTC".into(),
                machine: "AMD EPYC, 2 cores".into(),
                command: "keel-bench compare --workload put".into(),
                versions: vec!["etcd: etcd Version: 3.4.23".into()],
                notes: vec!["Short validation run.".into()],
            },
            rows: three_runs_each(),
            resources: Vec::new(),
        };
        let text = markdown(&report);
        for expected in [
            "- Date: 2026-01-01",
            "AMD EPYC",
            "`keel-bench compare --workload put`",
            "medians over 3 runs each",
            "3.30x",
            "## Every run",
            "put: put",
        ] {
            assert!(text.contains(expected), "{expected:?} missing in\n{text}");
        }
    }

    #[test]
    fn merged_reports_keep_every_row_and_command() {
        let report = |command: &str, rows: Vec<Row>| Report {
            meta: Meta {
                date_utc: format!("date of {command}"),
                command: command.into(),
                notes: vec!["same note".into()],
                ..Meta::default()
            },
            rows,
            resources: Vec::new(),
        };
        let merged = merge(vec![
            report("compare --workload put", three_runs_each()),
            report("compare --workload txn", vec![row("keel", Workload::Txn, 64, 1, 1.0, 1.0)]),
        ]);
        assert_eq!(merged.rows.len(), 7);
        assert_eq!(merged.meta.date_utc, "date of compare --workload put");
        assert_eq!(merged.meta.notes, vec!["same note".to_string()]);
        let text = markdown(&merged);
        assert!(text.contains("- Commands:\n  - `compare --workload put`\n  - `compare --workload txn`\n"), "{text}");
    }

    #[test]
    fn the_json_report_reads_back() {
        let report = Report { meta: Meta::default(), rows: three_runs_each(), resources: Vec::new() };
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.json");
        write_json(&path, &report).expect("written");
        let back: Report = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("parses");
        assert_eq!(back, report);
    }
}
