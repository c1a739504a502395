//! The flags that keep a member's disk in check: etcd's `--quota-backend-bytes` and
//! `--auto-compaction-mode` / `--auto-compaction-retention`, with etcd's defaults and parsing,
//! and Keel's `--min-free-disk-bytes`.

use std::time::Duration;

use clap::Args;

/// The disk flags, flattened into `Flags`.
#[derive(Clone, Debug, Args)]
pub struct DiskFlags {
    /// Raise an alarm when the database exceeds this many bytes (0: etcd's default, 2 GiB;
    /// negative: no quota). While the NOSPACE alarm is active, writes that add data are refused.
    #[arg(long, env = "KEEL_QUOTA_BACKEND_BYTES", default_value_t = 0, allow_negative_numbers = true)]
    pub quota_backend_bytes: i64,

    /// Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for
    /// duration based retention, defaulting to hours if no time unit is provided (e.g. '5m').
    /// 'revision' for revision number based retention.
    #[arg(long, env = "KEEL_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,

    /// Auto compaction retention for mvcc key value store. 0 means disable auto compaction.
    #[arg(long, env = "KEEL_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,

    /// Keel: while the data dir's filesystem has less than this many bytes free, refuse writes
    /// that add data and raise this member's NOSPACE alarm, so that a filling disk stops writes
    /// before the database meets ENOSPC (0: no reserve).
    #[arg(long, env = "KEEL_MIN_FREE_DISK_BYTES", default_value_t = crate::member::DISK_RESERVE_BYTES_DEFAULT)]
    pub min_free_disk_bytes: u64,
}

/// What the leader compacts on its own, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much time of history.
    Periodic(Duration),
    /// Keep this many revisions of history.
    Revision(i64),
}

/// The largest quota etcd recommends; Keel accepts more, as etcd does (with a warning there).
const QUOTA_BYTES_MAX: i64 = 1 << 50;

impl DiskFlags {
    /// The quota in bytes, `None` for no quota.
    pub fn quota(&self) -> Result<Option<u64>, String> {
        match self.quota_backend_bytes {
            bytes if bytes < 0 => Ok(None),
            0 => Ok(Some(crate::member::QUOTA_BYTES_DEFAULT)),
            bytes if bytes > QUOTA_BYTES_MAX => {
                Err(format!("--quota-backend-bytes must be at most {QUOTA_BYTES_MAX}, got {bytes}"))
            }
            bytes => Ok(Some(bytes.unsigned_abs())),
        }
    }

    /// etcd's `parseCompactionRetention`: a whole number is hours (periodic) or revisions
    /// (revision); otherwise a Go duration, periodic only. `None`: auto-compaction is off.
    pub fn auto_compaction(&self) -> Result<Option<AutoCompaction>, String> {
        let retention = self.auto_compaction_retention.trim();
        let periodic = match self.auto_compaction_mode.as_str() {
            "periodic" => true,
            "revision" => false,
            other => return Err(format!("unknown auto-compaction-mode {other:?} (periodic or revision)")),
        };
        if let Ok(count) = retention.parse::<i64>() {
            return match count {
                0 => Ok(None),
                count if count < 0 => Err(format!("--auto-compaction-retention must not be negative, got {count}")),
                hours if periodic => hours
                    .checked_mul(3600)
                    .and_then(|secs| u64::try_from(secs).ok())
                    .filter(|secs| *secs <= RETENTION_SECS_MAX)
                    .map(|secs| Some(AutoCompaction::Periodic(Duration::from_secs(secs))))
                    .ok_or_else(|| format!("--auto-compaction-retention {hours} hours is too long")),
                revisions => Ok(Some(AutoCompaction::Revision(revisions))),
            };
        }
        if !periodic {
            return Err(format!(
                "--auto-compaction-retention {retention:?}: revision mode takes a number of revisions"
            ));
        }
        let duration = super::parse_go_duration(retention)
            .map_err(|e| format!("error parsing --auto-compaction-retention: {e}"))?;
        if duration.as_secs() > RETENTION_SECS_MAX {
            return Err(format!("--auto-compaction-retention {retention} is too long"));
        }
        Ok(Some(AutoCompaction::Periodic(duration)))
    }
}

/// The longest periodic retention: ten years, far past any use, and never an overflow.
const RETENTION_SECS_MAX: u64 = 10 * 365 * 24 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(mode: &str, retention: &str) -> DiskFlags {
        DiskFlags {
            quota_backend_bytes: 0,
            auto_compaction_mode: mode.into(),
            auto_compaction_retention: retention.into(),
            min_free_disk_bytes: 0,
        }
    }

    #[test]
    fn retention_is_parsed_as_etcd_parses_it() {
        let hour = Duration::from_secs(3600);
        assert_eq!(flags("periodic", "0").auto_compaction(), Ok(None));
        assert_eq!(flags("periodic", "1").auto_compaction(), Ok(Some(AutoCompaction::Periodic(hour))));
        assert_eq!(
            flags("periodic", "90s").auto_compaction(),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(90))))
        );
        assert_eq!(flags("revision", "1000").auto_compaction(), Ok(Some(AutoCompaction::Revision(1000))));
        assert_eq!(flags("revision", "0").auto_compaction(), Ok(None));
        for (mode, retention, message) in [
            ("daily", "1", "unknown auto-compaction-mode"),
            ("revision", "5m", "revision mode takes a number"),
            ("periodic", "soon", "error parsing --auto-compaction-retention"),
            ("periodic", "-3", "must not be negative"),
            ("periodic", "9223372036854775807", "too long"),
            ("periodic", "100000000h", "too long"),
        ] {
            let error = flags(mode, retention).auto_compaction().expect_err(retention);
            assert!(error.contains(message), "{mode} {retention}: {error}");
        }
    }

    #[test]
    fn quota_follows_etcds_zero_and_negative_rules() {
        let quota = |bytes| DiskFlags { quota_backend_bytes: bytes, ..flags("periodic", "0") }.quota();
        assert_eq!(quota(0), Ok(Some(crate::member::QUOTA_BYTES_DEFAULT)));
        assert_eq!(quota(-1), Ok(None));
        assert_eq!(quota(4096), Ok(Some(4096)));
        assert!(quota(i64::MAX).is_err());
    }
}
