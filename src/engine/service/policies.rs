//! Policies as the user sees them (DESIGN.md §12): create, list, show, delete, assign a
//! volume, unassign it, run now. What runs them is [`super::scheduler`].

use std::sync::Arc;

use super::{EngineError, Service, check_name, name_taken, not_found};
use crate::catalog::{AssignmentRecord, PolicyInUse, PolicyRecord, RunRecord};
use crate::clock::now_rfc3339;
use crate::engine::{Denial, InvalidRequest, Refusal};
use crate::identity::Caller;
use crate::kinds::Role;
use crate::lifecycle::Schedule;
use crate::repo::store::RepositoryLocation;

/// More generations than this is a typing mistake, not a policy.
const MAX_KEEP: u32 = 100_000;

/// A policy with its volumes and recent runs, as `policy show` prints it.
pub struct PolicyView {
    pub policy: PolicyRecord,
    /// Each assigned volume and its next slot (Unix ms).
    pub volumes: Vec<(AssignmentRecord, Option<i64>)>,
    pub runs: Vec<RunRecord>,
}

/// Runs `policy show` lists: the most recent this many.
const SHOWN_RUNS: usize = 50;

impl Service {
    pub fn create_policy(
        &self,
        caller: &Caller,
        mut policy: PolicyRecord,
    ) -> Result<PolicyRecord, EngineError> {
        check_name("policy", &policy.name)?;
        let bad = |why: &str| InvalidRequest::BadPolicy {
            name: policy.name.clone(),
            why: why.to_string(),
        };
        Schedule::parse(&policy.schedule).map_err(InvalidRequest::from)?;
        if policy.full_every > 0 && !policy.incremental {
            return Err(
                bad("--full-every needs --incremental (without it every run is a full)").into(),
            );
        }
        if policy.keep_last > MAX_KEEP || policy.keep_days > MAX_KEEP {
            return Err(bad(&format!(
                "--keep-last and --keep-days are at most {MAX_KEEP}"
            ))
            .into());
        }
        if !policy.copy_to.is_empty() {
            self.check_copy_target(caller, &policy.copy_to)?;
        }
        policy.project = caller.owner().to_string();
        policy.created_at = now_rfc3339();
        self.catalog.insert_policy(&policy).map_err(name_taken)?;
        self.audit_action(
            caller,
            &policy.project,
            "policy.create",
            &policy.name,
            serde_json::json!({"schedule": policy.schedule, "incremental": policy.incremental,
                "full_every": policy.full_every, "keep_last": policy.keep_last,
                "keep_days": policy.keep_days, "copy_to": policy.copy_to}),
        );
        Ok(policy)
    }

    /// A copy target is a server-side location: an admin's to name, and one that parses.
    pub(super) fn check_copy_target(
        &self,
        caller: &Caller,
        location: &str,
    ) -> Result<RepositoryLocation, EngineError> {
        if caller.role != Role::Admin {
            return Err(Denial::CopyNeedsAdmin {
                repository: location.to_string(),
            }
            .into());
        }
        let parsed =
            RepositoryLocation::parse(location).map_err(|why| InvalidRequest::BadRepository {
                location: location.to_string(),
                why,
            })?;
        if self.is_own_repository(location) {
            return Err(InvalidRequest::BadRepository {
                location: location.to_string(),
                why: "it is this server's own repository".into(),
            }
            .into());
        }
        Ok(parsed)
    }

    /// The caller's project's policy `name`.
    fn own_policy(&self, caller: &Caller, name: &str) -> Result<PolicyRecord, EngineError> {
        self.catalog
            .get_policy(caller.owner(), name)
            .map_err(not_found)
    }

    pub fn list_policies(&self, caller: &Caller) -> Result<Vec<PolicyRecord>, EngineError> {
        Ok(self.catalog.list_policies(caller.visible())?)
    }

    pub fn get_policy(&self, caller: &Caller, name: &str) -> Result<PolicyView, EngineError> {
        let policy = self.own_policy(caller, name)?;
        let schedule = Schedule::parse(&policy.schedule).map_err(InvalidRequest::from)?;
        let volumes = self
            .catalog
            .assignments(Some((&policy.project, &policy.name)))?
            .into_iter()
            .map(|a| {
                let next = schedule.next_after(a.last_slot_ms);
                (a, next)
            })
            .collect();
        let mut runs = self
            .catalog
            .list_runs(Some(&policy.project), Some(&policy.name), "")?;
        let skip = runs.len().saturating_sub(SHOWN_RUNS);
        runs.drain(..skip);
        Ok(PolicyView {
            policy,
            volumes,
            runs,
        })
    }

    pub fn delete_policy(&self, caller: &Caller, name: &str) -> Result<(), EngineError> {
        let project = caller.owner();
        match self
            .catalog
            .delete_policy(project, name)
            .map_err(not_found)?
        {
            Ok(()) => {}
            Err(PolicyInUse { volumes }) => {
                return Err(Refusal::PolicyAssigned {
                    policy: name.to_string(),
                    volumes,
                }
                .into());
            }
        }
        self.audit_action(
            caller,
            project,
            "policy.delete",
            name,
            serde_json::json!({}),
        );
        Ok(())
    }

    /// Assigns `volume` (id or name) to the policy: its first run is the first slot
    /// after now.
    pub fn assign_policy(
        &self,
        caller: &Caller,
        volume: &str,
        name: &str,
    ) -> Result<PolicyView, EngineError> {
        let volume = self.get_volume(caller, volume)?;
        let policy = self.own_policy(caller, name)?;
        if volume.project != policy.project {
            return Err(EngineError::NotFound {
                kind: "volume",
                id: volume.id,
            });
        }
        if volume.kind == crate::kinds::VolumeKind::Delta {
            return Err(InvalidRequest::DeltaNotBackedUp { volume: volume.id }.into());
        }
        self.catalog
            .assign_policy(&AssignmentRecord {
                project: policy.project.clone(),
                policy: policy.name.clone(),
                volume_id: volume.id.clone(),
                last_slot_ms: crate::clock::now_unix_millis(),
                runs_since_full: 0,
                assigned_at: now_rfc3339(),
            })
            .map_err(not_found)?;
        self.audit_action(
            caller,
            &policy.project,
            "policy.assign",
            &policy.name,
            serde_json::json!({"volume": volume.id}),
        );
        self.get_policy(caller, name)
    }

    pub fn unassign_policy(
        &self,
        caller: &Caller,
        volume: &str,
        name: &str,
    ) -> Result<PolicyView, EngineError> {
        let volume = self.get_volume(caller, volume)?;
        let policy = self.own_policy(caller, name)?;
        if !self
            .catalog
            .unassign_policy(&policy.project, &policy.name, &volume.id)?
        {
            return Err(EngineError::NotFound {
                kind: "assignment of policy",
                id: format!("{name} to volume {}", volume.id),
            });
        }
        self.audit_action(
            caller,
            &policy.project,
            "policy.unassign",
            &policy.name,
            serde_json::json!({"volume": volume.id}),
        );
        self.get_policy(caller, name)
    }

    /// Runs the policy now on each of its volumes (not one already running), then
    /// prunes and copies as a scheduled run does; with `wait`, returns once all ended.
    pub fn run_policy(
        self: &Arc<Self>,
        caller: &Caller,
        name: &str,
        wait: bool,
    ) -> Result<Vec<RunRecord>, EngineError> {
        let policy = self.own_policy(caller, name)?;
        let mut started = Vec::new();
        for a in self
            .catalog
            .assignments(Some((&policy.project, &policy.name)))?
        {
            if let Some(run) = self.start_manual_run(&policy, &a)? {
                started.push(run);
            }
        }
        self.audit_action(
            caller,
            &policy.project,
            "policy.run",
            name,
            serde_json::json!({"runs": started.iter().map(|r| &r.id).collect::<Vec<_>>()}),
        );
        if wait {
            for run in &started {
                self.wait_for_run(&run.id);
            }
            let ids: Vec<&String> = started.iter().map(|r| &r.id).collect();
            return Ok(self
                .catalog
                .list_runs(Some(&policy.project), Some(&policy.name), "")?
                .into_iter()
                .filter(|r| ids.contains(&&r.id))
                .collect());
        }
        Ok(started)
    }
}
