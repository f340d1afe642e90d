//! The scheduler (DESIGN.md §12): a thread per server that, twice a second, finds the
//! assignments whose policy has a slot due and runs each, at most one run per volume at
//! a time. A run is a normal backup (status, progress, quota, audit `source: policy
//! NAME`), then the policy's retention, then its copy.
//!
//! A slot is taken by one conditional catalog update of the assignment's last slot, so it
//! runs once on whichever node takes it. The slot taken is the latest one due: after
//! downtime across several slots, one catch-up run stands for all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{CreateBackup, Service, lock, new_id};
use crate::catalog::{AssignmentRecord, BackupRecord, PolicyRecord, RunRecord};
use crate::clock::{now_rfc3339, now_unix_millis, parse_rfc3339_millis};
use crate::engine::{EngineError, Refusal};
use crate::identity::Caller;
use crate::kinds::{Role, RunOutcome, Status};
use crate::lifecycle::{Generation, Retention, Schedule, plan_pruning};

const TICK: Duration = Duration::from_millis(500);
/// How often a run looks at its backup's state while it is being made.
const POLL: Duration = Duration::from_millis(100);

/// The scheduler thread and the runs it (or `policy run`) started, by run id.
#[derive(Default)]
pub(super) struct PolicyRuns {
    scheduler: Mutex<Option<JoinHandle<()>>>,
    running: Mutex<HashMap<String, Running>>,
}

struct Running {
    volume_id: String,
    handle: Option<JoinHandle<()>>,
}

/// A run's place in the table, given up when its thread ends however it ends.
struct Listed {
    svc: Arc<Service>,
    id: String,
}

impl Drop for Listed {
    fn drop(&mut self) {
        lock(&self.svc.policy_runs.running).remove(&self.id);
    }
}

/// The caller a policy's runs act as: a member of the policy's project.
fn policy_caller(policy: &PolicyRecord) -> Caller {
    Caller {
        project: policy.project.clone(),
        role: Role::Member,
        token_id: "system".into(),
        acting_for: None,
    }
}

/// Whether this run is a full, and the count of runs since a full after it.
fn next_kind(policy: &PolicyRecord, runs_since_full: u32) -> (bool, u32) {
    if !policy.incremental || (policy.full_every > 0 && runs_since_full + 1 >= policy.full_every) {
        (true, 0)
    } else {
        (false, runs_since_full + 1)
    }
}

impl Service {
    /// Starts the scheduler thread (`serve`; stopped by `shutdown`).
    pub fn start_scheduler(self: &Arc<Self>) {
        let svc = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || {
                loop {
                    let Some(svc) = svc.upgrade() else { return };
                    if svc.is_stopping() {
                        return;
                    }
                    // A failure (a panic included) costs one tick, never the scheduler.
                    let ticked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        svc.schedule_tick()
                    }));
                    match ticked {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!(error = %e, "scheduler tick failed"),
                        Err(_) => {
                            tracing::error!("a scheduler tick panicked; the next runs as usual")
                        }
                    }
                    drop(svc);
                    std::thread::sleep(TICK);
                }
            });
        match spawned {
            Ok(h) => *lock(&self.policy_runs.scheduler) = Some(h),
            Err(e) => tracing::error!(error = %e, "cannot start the scheduler"),
        }
    }

    /// Takes and starts every due slot.
    fn schedule_tick(self: &Arc<Self>) -> Result<(), EngineError> {
        let policies: HashMap<(String, String), (PolicyRecord, Schedule)> = self
            .catalog
            .list_policies(None)?
            .into_iter()
            .filter_map(|p| match Schedule::parse(&p.schedule) {
                Ok(s) => Some(((p.project.clone(), p.name.clone()), (p, s))),
                Err(e) => {
                    tracing::warn!(policy = %p.name, error = %e, "policy schedule unreadable");
                    None
                }
            })
            .collect();
        for a in self.catalog.assignments(None)? {
            let Some((policy, schedule)) = policies.get(&(a.project.clone(), a.policy.clone()))
            else {
                continue;
            };
            let now = now_unix_millis();
            let Some(slot) = schedule.latest_due(a.last_slot_ms, now) else {
                continue;
            };
            if self.volume_occupied(&a.volume_id) {
                // Not taken: the slot is still due at the next tick.
                continue;
            }
            let (full, runs_since_full) = next_kind(policy, a.runs_since_full);
            let run = self.new_run(policy, &a, slot);
            if self.catalog.take_slot(&a, slot, runs_since_full, &run)? {
                tracing::info!(policy = %policy.name, volume = %a.volume_id, run = %run.id, full, "policy run due");
                self.spawn_run(policy.clone(), run, full);
            }
        }
        Ok(())
    }

    /// Whether a backup, restore, merge or policy run holds the volume on this node.
    fn volume_occupied(&self, volume_id: &str) -> bool {
        lock(&self.busy).contains_key(volume_id)
            || lock(&self.policy_runs.running)
                .values()
                .any(|r| r.volume_id == volume_id)
    }

    fn new_run(&self, policy: &PolicyRecord, a: &AssignmentRecord, slot_ms: i64) -> RunRecord {
        RunRecord {
            id: new_id("run"),
            project: policy.project.clone(),
            policy: policy.name.clone(),
            volume_id: a.volume_id.clone(),
            slot_ms,
            node: self.node_name().to_string(),
            outcome: RunOutcome::Running,
            started_at: now_rfc3339(),
            ..Default::default()
        }
    }

    /// `policy run`: a run now on one assigned volume, unless one is running there.
    pub(super) fn start_manual_run(
        self: &Arc<Self>,
        policy: &PolicyRecord,
        a: &AssignmentRecord,
    ) -> Result<Option<RunRecord>, EngineError> {
        if self.volume_occupied(&a.volume_id) {
            return Ok(None);
        }
        let run = self.new_run(policy, a, now_unix_millis());
        self.catalog.insert_run(&run)?;
        let (full, _) = next_kind(policy, a.runs_since_full);
        self.spawn_run(policy.clone(), run.clone(), full);
        Ok(Some(run))
    }

    fn spawn_run(self: &Arc<Self>, policy: PolicyRecord, mut run: RunRecord, full: bool) {
        let mut running = lock(&self.policy_runs.running);
        let svc = self.clone();
        let id = run.id.clone();
        let volume_id = run.volume_id.clone();
        let handle = std::thread::spawn(move || {
            // Leaves the table whatever happens below (a panic included), so nobody
            // waits for it for ever.
            let _listed = Listed {
                svc: svc.clone(),
                id: run.id.clone(),
            };
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                svc.execute_run(&policy, &mut run, full)
            }));
            let error = match ran {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("internal error: the run panicked (see the server log)".into()),
            };
            run.outcome = if error.is_some() {
                RunOutcome::Failed
            } else {
                RunOutcome::Succeeded
            };
            run.error = error.unwrap_or_default();
            run.finished_at = now_rfc3339();
            if !run.error.is_empty() {
                tracing::warn!(policy = %run.policy, volume = %run.volume_id, run = %run.id, error = %run.error, "policy run failed");
            }
            svc.metrics
                .policy_runs
                .with_label_values(&[run.outcome.as_str()])
                .inc();
            let recorded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                svc.catalog.update_run(&run)
            }));
            match recorded {
                Ok(Ok(())) => {}
                // The record stays `running` until this node's next start fails it.
                Ok(Err(e)) => {
                    tracing::error!(run = %run.id, error = %e, "cannot record the policy run's end")
                }
                Err(_) => tracing::error!(run = %run.id, "recording the policy run's end panicked"),
            }
        });
        running.insert(
            id,
            Running {
                volume_id,
                handle: Some(handle),
            },
        );
    }

    /// The backup, then retention, then the copy; the run record says how far it got.
    fn execute_run(
        self: &Arc<Self>,
        policy: &PolicyRecord,
        run: &mut RunRecord,
        full: bool,
    ) -> Result<(), EngineError> {
        if self.is_stopping() {
            return Err(EngineError::Interrupted);
        }
        let caller = policy_caller(policy);
        let create = |incremental: bool| {
            self.create_backup(
                &caller,
                CreateBackup {
                    volume: run.volume_id.clone(),
                    name: String::new(),
                    incremental,
                    force: false,
                    compression: String::new(),
                    source: Some(format!("policy {}", policy.name)),
                },
            )
        };
        let backup = match create(!full) {
            // The chain's first run, or its full is gone: a full starts one.
            Err(EngineError::Refused(Refusal::NoFullInChain { .. })) => create(false)?,
            other => other?,
        };
        run.backup_id = backup.id.clone();
        self.catalog.update_run(run)?;
        let done = self.wait_for_backup(&backup.id)?;
        if done.status != Status::Available {
            return Err(Refusal::BackupNotAvailable {
                id: done.id,
                status: done.status,
            }
            .into());
        }
        let pruned = self.apply_retention(&caller, policy, &run.volume_id)?;
        run.pruned = pruned.join(",");
        self.catalog.update_run(run)?;
        if !policy.copy_to.is_empty() {
            self.copy_backup_to(&backup.id, &policy.copy_to)?;
            run.copied_to = policy.copy_to.clone();
        }
        Ok(())
    }

    /// Waits until backup `id` is no longer being made (its job always records an end).
    fn wait_for_backup(&self, id: &str) -> Result<BackupRecord, EngineError> {
        loop {
            let b = self.get_backup(&Caller::system(), id)?;
            if b.status != Status::Creating {
                return Ok(b);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Prunes the volume's backups by the policy's retention; returns what it removed.
    fn apply_retention(
        self: &Arc<Self>,
        caller: &Caller,
        policy: &PolicyRecord,
        volume_id: &str,
    ) -> Result<Vec<String>, EngineError> {
        let retention = Retention {
            keep_last: policy.keep_last,
            keep_days: policy.keep_days,
        };
        if !retention.prunes() {
            return Ok(Vec::new());
        }
        let mut backups: Vec<BackupRecord> = self
            .catalog
            .list_backups(Some(volume_id), None)?
            .into_iter()
            .filter(|b| matches!(b.status, Status::Available | Status::Restoring))
            .collect();
        backups.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        let mut generations = Vec::with_capacity(backups.len());
        for b in &backups {
            generations.push(Generation {
                id: b.id.clone(),
                chain_id: b.chain_id.clone(),
                incremental: b.parent_id.is_some(),
                created_at_ms: parse_rfc3339_millis(&b.created_at).unwrap_or(i64::MAX),
                in_use: b.status == Status::Restoring
                    || !self.catalog.delta_volumes_of_backup(&b.id)?.is_empty(),
            });
        }
        let plan = plan_pruning(&generations, retention, now_unix_millis());
        let mut pruned = Vec::new();
        if let Some(target) = &plan.merge_into {
            let record = self.catalog.get_backup(target, None)?;
            let ancestors = self.catalog_ancestors(&record)?;
            self.merge_backup(caller, target)?;
            pruned.extend(ancestors);
        }
        for id in &plan.delete {
            self.delete_backup(caller, id, false)?;
            self.wait_until_deleted(id)?;
            pruned.push(id.clone());
        }
        Ok(pruned)
    }

    /// Waits for a background delete to finish: the record gone, or its error.
    fn wait_until_deleted(&self, id: &str) -> Result<(), EngineError> {
        loop {
            match self.get_backup(&Caller::system(), id) {
                Err(EngineError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e),
                Ok(b) if b.status == Status::Error => {
                    return Err(Refusal::BackupNotAvailable {
                        id: b.id,
                        status: b.status,
                    }
                    .into());
                }
                Ok(_) => std::thread::sleep(POLL),
            }
        }
    }

    /// Waits until run `id` (started here) has ended.
    pub(super) fn wait_for_run(&self, id: &str) {
        let handle = lock(&self.policy_runs.running)
            .get_mut(id)
            .and_then(|r| r.handle.take());
        match handle {
            Some(h) => {
                if h.join().is_err() {
                    tracing::error!(run = %id, "a policy run thread panicked");
                }
            }
            // Someone else joins it: wait for it to leave the table.
            None => {
                while lock(&self.policy_runs.running).contains_key(id) {
                    std::thread::sleep(POLL);
                }
            }
        }
    }

    /// At shutdown, after the jobs: the scheduler, then every run (their backups have
    /// ended, so each records itself and returns).
    pub(super) fn stop_scheduler(&self) {
        if let Some(h) = lock(&self.policy_runs.scheduler).take()
            && h.join().is_err()
        {
            tracing::error!("the scheduler thread panicked");
        }
        let ids: Vec<String> = lock(&self.policy_runs.running).keys().cloned().collect();
        for id in ids {
            self.wait_for_run(&id);
        }
    }
}
