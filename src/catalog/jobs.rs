//! Jobs: a backup or restore claims its volume with a row here, held by one node under a
//! lease that node renews with its heartbeat. The row's primary key is the volume, so two
//! jobs can never hold one volume, whichever nodes ask; a lease that runs out (its node
//! died) lets any node fail the job as cinder does, and a node that comes back finds its
//! job gone and does not resume it.

use super::db::{Row, Session};
use super::{Catalog, CatalogError};
use crate::faults::fault;
use crate::kinds::JobKind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    /// The volume it holds: the backup's source, the restore's target.
    pub volume_id: String,
    pub kind: JobKind,
    /// The backup it makes or restores.
    pub subject: String,
    pub node: String,
    /// Milliseconds since the epoch after which other nodes take the job for lost.
    pub lease_until_ms: i64,
    pub started_at: String,
}

impl JobRecord {
    /// How a refusal names it: `backup bkp-…` or `restore of bkp-…`.
    pub fn describe(&self) -> String {
        match self.kind {
            JobKind::Backup => format!("backup {} on node {}", self.subject, self.node),
            JobKind::Restore => format!("restore of {} on node {}", self.subject, self.node),
            JobKind::Merge => format!("merge into {} on node {}", self.subject, self.node),
        }
    }
}

/// The answer to a claim.
#[derive(Debug)]
pub enum Claim {
    Claimed,
    /// Another job holds the volume.
    Busy(JobRecord),
}

/// A job failed because its node lost its lease (or restarted).
#[derive(Clone, Debug)]
pub struct LostJob {
    pub job: JobRecord,
    /// Whether its backup was still `creating` (its index, if written, must go).
    pub backup_failed: bool,
}

const COLUMNS: &str = "volume_id, kind, subject, node, lease_until_ms, started_at";

fn from_row(r: &Row) -> Result<JobRecord, CatalogError> {
    Ok(JobRecord {
        volume_id: r.get(0)?,
        kind: r.get(1)?,
        subject: r.get(2)?,
        node: r.get(3)?,
        lease_until_ms: r.get(4)?,
        started_at: r.get(5)?,
    })
}

/// Ends a job its node will not finish: a backup still `creating` becomes `error`, a
/// restore's target volume `error` and its backup `available` again; then its row goes.
fn fail_job(s: &mut dyn Session, job: &JobRecord, reason: &str) -> Result<LostJob, CatalogError> {
    let backup_failed = match job.kind {
        JobKind::Backup => s.execute(
            "UPDATE backups SET status = 'error', error = ?2 WHERE id = ?1 AND status = 'creating'",
            &[&job.subject, &reason],
        )? == 1,
        JobKind::Restore => {
            s.execute(
                "UPDATE volumes SET status = 'error', error = ?2 WHERE id = ?1 AND status = 'restoring'",
                &[&job.volume_id, &reason],
            )?;
            s.execute(
                "UPDATE backups SET status = 'available', error = '' WHERE id = ?1 AND status = 'restoring'
                 AND NOT EXISTS (SELECT 1 FROM jobs WHERE subject = ?1 AND kind = 'restore' AND volume_id != ?2)",
                &[&job.subject, &job.volume_id],
            )?;
            false
        }
        // A merge commits in one transaction or not at all: nothing to fail.
        JobKind::Merge => false,
    };
    s.execute(
        "DELETE FROM jobs WHERE volume_id = ?1 AND node = ?2",
        &[&job.volume_id, &job.node],
    )?;
    Ok(LostJob {
        job: job.clone(),
        backup_failed,
    })
}

impl Catalog {
    /// Claims `job.volume_id` for `job`, or says which job holds it: one conditional insert.
    pub fn claim_job(&self, job: &JobRecord) -> Result<Claim, CatalogError> {
        fault!("catalog.claim_job", CatalogError::disk_full);
        // The holder may finish between the insert and the read: then ask again.
        for _ in 0..3 {
            let inserted = self.read(|s| {
                s.execute(
                    &format!(
                        "INSERT INTO jobs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING"
                    ),
                    &[
                        &job.volume_id,
                        &job.kind,
                        &job.subject,
                        &job.node,
                        &job.lease_until_ms,
                        &job.started_at,
                    ],
                )
            })?;
            if inserted == 1 {
                return Ok(Claim::Claimed);
            }
            if let Some(holder) = self.job_on(&job.volume_id)? {
                return Ok(Claim::Busy(holder));
            }
        }
        Err(CatalogError::Corrupt(format!(
            "volume {} is claimed and released faster than it can be read",
            job.volume_id
        )))
    }

    /// Releases a volume `node` holds (nothing when another node took the job over).
    pub fn release_job(&self, volume_id: &str, node: &str) -> Result<(), CatalogError> {
        fault!("catalog.release_job", CatalogError::disk_full);
        self.read(|s| {
            s.execute(
                "DELETE FROM jobs WHERE volume_id = ?1 AND node = ?2",
                &[&volume_id, &node],
            )
        })?;
        Ok(())
    }

    pub fn job_on(&self, volume_id: &str) -> Result<Option<JobRecord>, CatalogError> {
        self.read(|s| {
            s.query_opt(
                &format!("SELECT {COLUMNS} FROM jobs WHERE volume_id = ?1"),
                &[&volume_id],
            )
        })?
        .map(|r| from_row(&r))
        .transpose()
    }

    /// Whether `node` still holds the job on `volume_id` for `subject`.
    pub fn holds_job(
        &self,
        volume_id: &str,
        subject: &str,
        node: &str,
    ) -> Result<bool, CatalogError> {
        Ok(self
            .job_on(volume_id)?
            .is_some_and(|j| j.subject == subject && j.node == node))
    }

    /// Jobs of one node, or of every node.
    pub fn list_jobs(&self, node: Option<&str>) -> Result<Vec<JobRecord>, CatalogError> {
        self.read(|s| {
            s.query(
                &format!(
                    "SELECT {COLUMNS} FROM jobs WHERE ?1 IS NULL OR node = ?1 ORDER BY started_at"
                ),
                &[&node],
            )
        })?
        .iter()
        .map(from_row)
        .collect()
    }

    /// Fails, in one transaction, every job whose lease ran out before `now_ms`.
    pub fn fail_lost_jobs(&self, now_ms: i64) -> Result<Vec<LostJob>, CatalogError> {
        fault!("catalog.fail_lost_jobs", CatalogError::disk_full);
        self.write(|s| {
            let expired = s
                .query(
                    &format!("SELECT {COLUMNS} FROM jobs WHERE lease_until_ms < ?1"),
                    &[&now_ms],
                )?
                .iter()
                .map(from_row)
                .collect::<Result<Vec<_>, _>>()?;
            expired
                .iter()
                .map(|j| fail_job(s, j, &format!("node {} lost", j.node)))
                .collect()
        })
    }

    /// At a node's start, in one transaction: its own jobs ended with its last run, and so
    /// did any record left `creating`, `deleting` or `restoring` with no job behind it (a
    /// catalog from before jobs). Returns what was failed.
    pub fn mark_interrupted(&self, node: &str) -> Result<Vec<LostJob>, CatalogError> {
        fault!("catalog.mark_interrupted", CatalogError::disk_full);
        self.write(|s| {
            let mine = s
                .query(
                    &format!("SELECT {COLUMNS} FROM jobs WHERE node = ?1"),
                    &[&node],
                )?
                .iter()
                .map(from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let mut lost = mine
                .iter()
                .map(|j| fail_job(s, j, "interrupted"))
                .collect::<Result<Vec<_>, _>>()?;
            let orphans: Vec<String> = s
                .query(
                    "SELECT id FROM backups WHERE status = 'creating'
                     AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.subject = backups.id)",
                    &[],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect::<Result<_, _>>()?;
            s.execute(
                "UPDATE backups SET status = 'error', error = 'interrupted'
                 WHERE status IN ('creating', 'deleting')
                 AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.subject = backups.id)",
                &[],
            )?;
            s.execute(
                "UPDATE backups SET status = 'available' WHERE status = 'restoring'
                 AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.subject = backups.id)",
                &[],
            )?;
            s.execute(
                "UPDATE volumes SET status = 'error', error = 'interrupted'
                 WHERE status IN ('creating', 'restoring')
                 AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.volume_id = volumes.id)",
                &[],
            )?;
            lost.extend(orphans.into_iter().map(|id| LostJob {
                job: JobRecord {
                    volume_id: String::new(),
                    kind: JobKind::Backup,
                    subject: id,
                    node: String::new(),
                    lease_until_ms: 0,
                    started_at: String::new(),
                },
                backup_failed: true,
            }));
            Ok(lost)
        })
    }
}
