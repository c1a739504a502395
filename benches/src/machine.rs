//! What a result was measured on and when: a ratio is only true for one machine and one run.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DD HH:MM UTC` for `at`.
pub fn utc_timestamp(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3_600, rest % 3_600 / 60)
}

/// Howard Hinnant's days-to-civil: the proleptic Gregorian date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `<cpu model>, <n> cores, <memory> GiB RAM`, from /proc.
pub fn description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    describe(&cpuinfo, &meminfo, cores)
}

fn describe(cpuinfo: &str, meminfo: &str, cores: usize) -> String {
    let model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map_or("unknown CPU", |(_, model)| model.trim());
    let memory_kib: Option<u64> = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok());
    let memory = memory_kib.map_or(String::new(), |kib| format!(", {:.0} GiB RAM", kib as f64 / 1_048_576.0));
    format!("{model}, {cores} cores{memory}")
}

/// The first line `binary --version` prints, or why there is none.
pub fn version_of(binary: &Path) -> String {
    match Command::new(binary).arg("--version").output() {
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stdout);
            text.lines().next().unwrap_or("").trim().to_string()
        }
        Err(error) => format!("{}: {error}", binary.display()),
    }
}

/// The commit of the checkout keel-bench was built from (`-dirty` with uncommitted changes), when
/// that checkout is still there: which Keel a result measured.
pub fn source_revision() -> Option<String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let output =
        Command::new("git").arg("-C").arg(workspace).args(["describe", "--always", "--dirty"]).output().ok()?;
    let revision = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !revision.is_empty()).then_some(revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_in_utc() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01 00:00 UTC");
        // 2000-02-29 12:34:56 UTC: a leap day in a century leap year.
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(951_827_696)), "2000-02-29 12:34 UTC");
        // 2024-12-31 23:59 UTC.
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(1_735_689_540)), "2024-12-31 23:59 UTC");
    }

    #[test]
    fn machine_from_proc_texts() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nprocessor\t: 1\nmodel name\t: AMD EPYC\n";
        let meminfo = "MemTotal:       25165824 kB\nMemFree: 1 kB\n";
        assert_eq!(describe(cpuinfo, meminfo, 2), "AMD EPYC, 2 cores, 24 GiB RAM");
        assert_eq!(describe("", "", 1), "unknown CPU, 1 cores");
    }
}
