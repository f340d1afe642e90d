//! Policies, the volumes assigned to them and their runs (DESIGN.md §12). A policy
//! belongs to a project and is named within it. An assignment remembers the last slot
//! run for its volume: the scheduler takes a slot with one conditional update of it,
//! so a slot runs once whichever nodes see it due, and after downtime the one missed
//! slot it runs replaces all of them.

use super::db::{Row, Session};
use super::{Catalog, CatalogError};
use crate::faults::fault;
use crate::kinds::RunOutcome;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyRecord {
    pub project: String,
    pub name: String,
    /// As the operator wrote it (lifecycle::Schedule parses it).
    pub schedule: String,
    /// Runs are incrementals (a full when the chain has none, or every `full_every`).
    pub incremental: bool,
    /// With `incremental`: every this many runs a full (0: never).
    pub full_every: u32,
    pub keep_last: u32,
    pub keep_days: u32,
    /// A repository each run's backup is copied to ("" for none).
    pub copy_to: String,
    pub created_at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignmentRecord {
    pub project: String,
    pub policy: String,
    pub volume_id: String,
    /// The last slot taken (run or skipped), in Unix milliseconds; at first, the time
    /// of assignment, so slots before it are not run.
    pub last_slot_ms: i64,
    /// Scheduled runs since the last full one (for `full_every`).
    pub runs_since_full: u32,
    pub assigned_at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunRecord {
    pub id: String,
    pub project: String,
    pub policy: String,
    pub volume_id: String,
    /// The slot it ran for (Unix ms); a run asked for by hand: when it was asked.
    pub slot_ms: i64,
    pub node: String,
    pub backup_id: String,
    pub outcome: RunOutcome,
    pub error: String,
    /// Backups retention removed, comma-separated.
    pub pruned: String,
    /// Where the backup was copied ("" when the policy copies nowhere).
    pub copied_to: String,
    pub started_at: String,
    pub finished_at: String,
}

const POLICY_COLUMNS: &str = "project, name, schedule, incremental, full_every, keep_last, \
                              keep_days, copy_to, created_at";
const ASSIGNMENT_COLUMNS: &str =
    "project, policy, volume_id, last_slot_ms, runs_since_full, assigned_at";
const RUN_COLUMNS: &str = "id, project, policy, volume_id, slot_ms, node, backup_id, outcome, \
                           error, pruned, copied_to, started_at, finished_at";

fn policy_row(r: &Row) -> Result<PolicyRecord, CatalogError> {
    Ok(PolicyRecord {
        project: r.get(0)?,
        name: r.get(1)?,
        schedule: r.get(2)?,
        incremental: r.get(3)?,
        full_every: r.get(4)?,
        keep_last: r.get(5)?,
        keep_days: r.get(6)?,
        copy_to: r.get(7)?,
        created_at: r.get(8)?,
    })
}

fn assignment_row(r: &Row) -> Result<AssignmentRecord, CatalogError> {
    Ok(AssignmentRecord {
        project: r.get(0)?,
        policy: r.get(1)?,
        volume_id: r.get(2)?,
        last_slot_ms: r.get(3)?,
        runs_since_full: r.get(4)?,
        assigned_at: r.get(5)?,
    })
}

fn run_row(r: &Row) -> Result<RunRecord, CatalogError> {
    Ok(RunRecord {
        id: r.get(0)?,
        project: r.get(1)?,
        policy: r.get(2)?,
        volume_id: r.get(3)?,
        slot_ms: r.get(4)?,
        node: r.get(5)?,
        backup_id: r.get(6)?,
        outcome: r.get(7)?,
        error: r.get(8)?,
        pruned: r.get(9)?,
        copied_to: r.get(10)?,
        started_at: r.get(11)?,
        finished_at: r.get(12)?,
    })
}

fn policy_on(
    s: &mut dyn Session,
    project: &str,
    name: &str,
) -> Result<Option<PolicyRecord>, CatalogError> {
    s.query_opt(
        &format!("SELECT {POLICY_COLUMNS} FROM policies WHERE project = ?1 AND name = ?2"),
        &[&project, &name],
    )?
    .map(|r| policy_row(&r))
    .transpose()
}

/// Why a policy cannot be deleted.
#[derive(Debug, PartialEq, Eq)]
pub struct PolicyInUse {
    pub volumes: Vec<String>,
}

impl Catalog {
    pub fn insert_policy(&self, p: &PolicyRecord) -> Result<(), CatalogError> {
        fault!("catalog.insert_policy", CatalogError::disk_full);
        self.write(|s| {
            if policy_on(s, &p.project, &p.name)?.is_some() {
                return Err(CatalogError::NameTaken {
                    kind: "policy",
                    name: p.name.clone(),
                });
            }
            s.execute(
                &format!(
                    "INSERT INTO policies ({POLICY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                &[
                    &p.project,
                    &p.name,
                    &p.schedule,
                    &p.incremental,
                    &p.full_every,
                    &p.keep_last,
                    &p.keep_days,
                    &p.copy_to,
                    &p.created_at,
                ],
            )?;
            Ok(())
        })
    }

    pub fn get_policy(&self, project: &str, name: &str) -> Result<PolicyRecord, CatalogError> {
        self.read(|s| policy_on(s, project, name))?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "policy",
                id: name.to_string(),
            })
    }

    /// Every policy, or one project's, by project and name.
    pub fn list_policies(&self, project: Option<&str>) -> Result<Vec<PolicyRecord>, CatalogError> {
        let rows = self.read(|s| match project {
            Some(p) => s.query(
                &format!("SELECT {POLICY_COLUMNS} FROM policies WHERE project = ?1 ORDER BY name"),
                &[&p],
            ),
            None => s.query(
                &format!("SELECT {POLICY_COLUMNS} FROM policies ORDER BY project, name"),
                &[],
            ),
        })?;
        rows.iter().map(policy_row).collect()
    }

    /// Deletes a policy no volume is assigned to (its runs go with it).
    pub fn delete_policy(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Result<(), PolicyInUse>, CatalogError> {
        fault!("catalog.delete_policy", CatalogError::disk_full);
        self.write(|s| {
            if policy_on(s, project, name)?.is_none() {
                return Err(CatalogError::NotFound {
                    kind: "policy",
                    id: name.to_string(),
                });
            }
            let volumes: Vec<String> = s
                .query(
                    "SELECT volume_id FROM policy_volumes WHERE project = ?1 AND policy = ?2
                     ORDER BY volume_id",
                    &[&project, &name],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect::<Result<_, _>>()?;
            if !volumes.is_empty() {
                return Ok(Err(PolicyInUse { volumes }));
            }
            s.execute(
                "DELETE FROM policy_runs WHERE project = ?1 AND policy = ?2",
                &[&project, &name],
            )?;
            s.execute(
                "DELETE FROM policies WHERE project = ?1 AND name = ?2",
                &[&project, &name],
            )?;
            Ok(Ok(()))
        })
    }

    /// Assigns a volume (idempotent: an existing assignment keeps its last slot).
    pub fn assign_policy(&self, a: &AssignmentRecord) -> Result<(), CatalogError> {
        fault!("catalog.assign_policy", CatalogError::disk_full);
        self.write(|s| {
            if policy_on(s, &a.project, &a.policy)?.is_none() {
                return Err(CatalogError::NotFound {
                    kind: "policy",
                    id: a.policy.clone(),
                });
            }
            let existing = s.query_opt(
                "SELECT 1 FROM policy_volumes WHERE project = ?1 AND policy = ?2 AND volume_id = ?3",
                &[&a.project, &a.policy, &a.volume_id],
            )?;
            if existing.is_none() {
                s.execute(
                    &format!(
                        "INSERT INTO policy_volumes ({ASSIGNMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                    ),
                    &[
                        &a.project,
                        &a.policy,
                        &a.volume_id,
                        &a.last_slot_ms,
                        &a.runs_since_full,
                        &a.assigned_at,
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Whether the volume was assigned (and now is not).
    pub fn unassign_policy(
        &self,
        project: &str,
        policy: &str,
        volume_id: &str,
    ) -> Result<bool, CatalogError> {
        fault!("catalog.unassign_policy", CatalogError::disk_full);
        let n = self.write(|s| {
            s.execute(
                "DELETE FROM policy_volumes WHERE project = ?1 AND policy = ?2 AND volume_id = ?3",
                &[&project, &policy, &volume_id],
            )
        })?;
        Ok(n > 0)
    }

    /// Every assignment, or one policy's.
    pub fn assignments(
        &self,
        policy: Option<(&str, &str)>,
    ) -> Result<Vec<AssignmentRecord>, CatalogError> {
        let rows = self.read(|s| match policy {
            Some((project, name)) => s.query(
                &format!(
                    "SELECT {ASSIGNMENT_COLUMNS} FROM policy_volumes WHERE project = ?1 AND policy = ?2
                     ORDER BY volume_id"
                ),
                &[&project, &name],
            ),
            None => s.query(
                &format!(
                    "SELECT {ASSIGNMENT_COLUMNS} FROM policy_volumes ORDER BY project, policy, volume_id"
                ),
                &[],
            ),
        })?;
        rows.iter().map(assignment_row).collect()
    }

    /// Takes the slot `slot_ms` for an assignment last run at `seen_last_slot_ms`, with
    /// the run's record: true for the one caller (on any node) that gets it.
    pub fn take_slot(
        &self,
        a: &AssignmentRecord,
        slot_ms: i64,
        runs_since_full: u32,
        run: &RunRecord,
    ) -> Result<bool, CatalogError> {
        fault!("catalog.take_slot", CatalogError::disk_full);
        self.write(|s| {
            let taken = s.execute(
                "UPDATE policy_volumes SET last_slot_ms = ?4, runs_since_full = ?5
                 WHERE project = ?1 AND policy = ?2 AND volume_id = ?3 AND last_slot_ms = ?6",
                &[
                    &a.project,
                    &a.policy,
                    &a.volume_id,
                    &slot_ms,
                    &runs_since_full,
                    &a.last_slot_ms,
                ],
            )? == 1;
            if taken {
                insert_run(s, run)?;
            }
            Ok(taken)
        })
    }

    /// Records a run asked for by hand (`policy run`), which takes no slot.
    pub fn insert_run(&self, run: &RunRecord) -> Result<(), CatalogError> {
        fault!("catalog.insert_run", CatalogError::disk_full);
        self.write(|s| insert_run(s, run))
    }

    /// Records how a run went.
    pub fn update_run(&self, run: &RunRecord) -> Result<(), CatalogError> {
        fault!("catalog.update_run", CatalogError::disk_full);
        self.write(|s| {
            s.execute(
                "UPDATE policy_runs SET backup_id = ?2, outcome = ?3, error = ?4, pruned = ?5,
                 copied_to = ?6, finished_at = ?7 WHERE id = ?1",
                &[
                    &run.id,
                    &run.backup_id,
                    &run.outcome,
                    &run.error,
                    &run.pruned,
                    &run.copied_to,
                    &run.finished_at,
                ],
            )?;
            Ok(())
        })
    }

    /// Runs started at or after `since` (an RFC 3339 time; "" for all), oldest first, of
    /// one project or all, of one policy or all.
    pub fn list_runs(
        &self,
        project: Option<&str>,
        policy: Option<&str>,
        since: &str,
    ) -> Result<Vec<RunRecord>, CatalogError> {
        let rows = self.read(|s| {
            s.query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM policy_runs
                     WHERE (?1 = '' OR project = ?1) AND (?2 = '' OR policy = ?2) AND started_at >= ?3
                     ORDER BY started_at, id"
                ),
                &[&project.unwrap_or(""), &policy.unwrap_or(""), &since],
            )
        })?;
        rows.iter().map(run_row).collect()
    }

    /// At start: this node's runs left `running` by the last process end as failed.
    pub fn fail_interrupted_runs(&self, node: &str, at: &str) -> Result<u64, CatalogError> {
        fault!("catalog.fail_interrupted_runs", CatalogError::disk_full);
        self.write(|s| {
            s.execute(
                "UPDATE policy_runs SET outcome = ?2, error = 'interrupted (the server stopped)',
                 finished_at = ?3 WHERE node = ?1 AND outcome = ?4",
                &[&node, &RunOutcome::Failed, &at, &RunOutcome::Running],
            )
        })
    }
}

fn insert_run(s: &mut dyn Session, run: &RunRecord) -> Result<(), CatalogError> {
    s.execute(
        &format!(
            "INSERT INTO policy_runs ({RUN_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        &[
            &run.id,
            &run.project,
            &run.policy,
            &run.volume_id,
            &run.slot_ms,
            &run.node,
            &run.backup_id,
            &run.outcome,
            &run.error,
            &run.pruned,
            &run.copied_to,
            &run.started_at,
            &run.finished_at,
        ],
    )?;
    Ok(())
}
