//! `blockdelta report` (the LVM script's mail, per volume and per policy): the backups
//! since a time with their duration, size and throughput, the policies' runs and
//! outcomes, totals. Pure: the service hands it the records and the repository's usage.

use crate::catalog::{BackupRecord, RunRecord, VolumeRecord};
use crate::clock::parse_rfc3339_millis;
use crate::kinds::{RunOutcome, Status};

const BLOCK: u64 = 4096;

/// `24h`, `90m`, `7d`, `30s`: how far back a report looks, in ms.
pub fn parse_since(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("--since {text:?}: expected a number and s, m, h or d (24h)"))?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("--since {text:?}: expected a number and s, m, h or d (24h)"))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "--since {text:?}: unit {unit:?}, expected s, m, h or d"
            ));
        }
    };
    n.checked_mul(unit_ms)
        .filter(|ms| *ms > 0 && *ms <= 3650 * 86_400_000)
        .ok_or_else(|| format!("--since {text:?}: from 1s to 3650d"))
}

#[derive(Clone, Debug, PartialEq)]
pub struct BackupLine {
    pub record: BackupRecord,
    pub duration_seconds: Option<f64>,
    /// Bytes of the blocks it found changed.
    pub changed_bytes: u64,
    /// Volume bytes read per second of its run.
    pub throughput: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VolumeLines {
    pub volume_id: String,
    pub name: String,
    pub backups: Vec<BackupLine>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyLines {
    pub project: String,
    pub name: String,
    pub succeeded: u64,
    pub failed: u64,
    pub running: u64,
    pub runs: Vec<RunRecord>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub backups: u64,
    pub available: u64,
    pub failed: u64,
    pub changed_bytes: u64,
    pub stored_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub volumes: Vec<VolumeLines>,
    pub policies: Vec<PolicyLines>,
    pub totals: Totals,
}

/// The report of what started at or after `since` (RFC 3339).
pub fn build(
    volumes: &[VolumeRecord],
    backups: &[BackupRecord],
    runs: &[RunRecord],
    since: &str,
) -> Report {
    let mut report = Report::default();
    let recent: Vec<&BackupRecord> = backups
        .iter()
        .filter(|b| b.created_at.as_str() >= since)
        .collect();
    for v in volumes {
        let lines: Vec<BackupLine> = recent
            .iter()
            .filter(|b| b.volume_id == v.id)
            .map(|b| line(b))
            .collect();
        if !lines.is_empty() {
            report.volumes.push(VolumeLines {
                volume_id: v.id.clone(),
                name: v.name.clone(),
                backups: lines,
            });
        }
    }
    for b in &recent {
        let t = &mut report.totals;
        t.backups += 1;
        match b.status {
            Status::Error => t.failed += 1,
            Status::Available | Status::Restoring => t.available += 1,
            _ => {}
        }
        t.changed_bytes += b.changed_blocks * BLOCK;
        t.stored_bytes += b.stored_bytes;
    }
    for run in runs.iter().filter(|r| r.started_at.as_str() >= since) {
        let at = match report
            .policies
            .iter()
            .position(|p| p.project == run.project && p.name == run.policy)
        {
            Some(i) => i,
            None => {
                report.policies.push(PolicyLines {
                    project: run.project.clone(),
                    name: run.policy.clone(),
                    ..Default::default()
                });
                report.policies.len() - 1
            }
        };
        let p = &mut report.policies[at];
        match run.outcome {
            RunOutcome::Succeeded => p.succeeded += 1,
            RunOutcome::Failed => p.failed += 1,
            RunOutcome::Running => p.running += 1,
        }
        p.runs.push(run.clone());
    }
    report
}

fn line(b: &BackupRecord) -> BackupLine {
    let duration = match (
        parse_rfc3339_millis(&b.created_at),
        parse_rfc3339_millis(&b.completed_at),
    ) {
        (Some(start), Some(end)) if end >= start => Some((end - start) as f64 / 1000.0),
        _ => None,
    };
    BackupLine {
        record: b.clone(),
        duration_seconds: duration,
        changed_bytes: b.changed_blocks * BLOCK,
        throughput: duration.filter(|d| *d > 0.0).map(|d| b.size as f64 / d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(id: &str, volume: &str, at: &str, done: &str, status: Status) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            volume_id: volume.into(),
            created_at: at.into(),
            completed_at: done.into(),
            status,
            size: 8 << 20,
            changed_blocks: 10,
            stored_bytes: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn since_reads_its_units() {
        assert_eq!(parse_since("24h"), Ok(86_400_000));
        assert_eq!(parse_since("90m"), Ok(5_400_000));
        assert_eq!(parse_since("7d"), Ok(604_800_000));
        for bad in ["", "h", "24", "24w", "0h", "99999d", "-1h"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lines_totals_and_runs() {
        let volumes = vec![
            VolumeRecord {
                id: "vol-1".into(),
                name: "db".into(),
                ..Default::default()
            },
            VolumeRecord {
                id: "vol-2".into(),
                name: "idle".into(),
                ..Default::default()
            },
        ];
        let backups = vec![
            backup(
                "b0",
                "vol-1",
                "2026-12-01T00:00:00.000Z",
                "2026-12-01T00:00:01.000Z",
                Status::Available,
            ),
            backup(
                "b1",
                "vol-1",
                "2026-12-02T00:00:00.000Z",
                "2026-12-02T00:00:02.000Z",
                Status::Available,
            ),
            backup("b2", "vol-1", "2026-12-02T01:00:00.000Z", "", Status::Error),
        ];
        let runs = vec![
            RunRecord {
                project: "admin".into(),
                policy: "p".into(),
                outcome: RunOutcome::Succeeded,
                started_at: "2026-12-02T00:00:00.000Z".into(),
                ..Default::default()
            },
            RunRecord {
                project: "admin".into(),
                policy: "p".into(),
                outcome: RunOutcome::Failed,
                started_at: "2026-12-02T01:00:00.000Z".into(),
                ..Default::default()
            },
        ];
        let r = build(&volumes, &backups, &runs, "2026-12-01T12:00:00.000Z");
        assert_eq!(
            r.volumes.len(),
            1,
            "a volume without backups since is left out"
        );
        let lines = &r.volumes[0].backups;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].duration_seconds, Some(2.0));
        assert_eq!(lines[0].throughput, Some((8 << 20) as f64 / 2.0));
        assert_eq!(lines[0].changed_bytes, 40960);
        assert_eq!(lines[1].duration_seconds, None);
        assert_eq!(
            r.totals,
            Totals {
                backups: 2,
                available: 1,
                failed: 1,
                changed_bytes: 2 * 40960,
                stored_bytes: 2000,
            }
        );
        assert_eq!((r.policies[0].succeeded, r.policies[0].failed), (1, 1));
    }
}
