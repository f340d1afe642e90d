//! `blockdelta.v1.PolicyService`: backup policies, assignments and runs.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::caller;
use super::pb::policy_service_server::PolicyService;
use super::{Api, blocking, pb};
use crate::clock::format_unix_millis;
use crate::engine::{PolicyRecord, PolicyView, RunRecord};

pub struct PolicyApi {
    pub api: Arc<Api>,
}

fn policy(p: PolicyRecord) -> pb::Policy {
    pb::Policy {
        project: p.project,
        name: p.name,
        schedule: p.schedule,
        incremental: p.incremental,
        full_every: p.full_every,
        keep_last: p.keep_last,
        keep_days: p.keep_days,
        copy_to: p.copy_to,
        created_at: p.created_at,
        volumes: Vec::new(),
        runs: Vec::new(),
    }
}

fn view(v: PolicyView) -> pb::Policy {
    pb::Policy {
        volumes: v
            .volumes
            .into_iter()
            .map(|(a, next)| pb::PolicyVolume {
                volume_id: a.volume_id,
                last_slot: format_unix_millis(a.last_slot_ms),
                next_slot: next.map(format_unix_millis).unwrap_or_default(),
                assigned_at: a.assigned_at,
            })
            .collect(),
        runs: v.runs.into_iter().map(run).collect(),
        ..policy(v.policy)
    }
}

pub fn run(r: RunRecord) -> pb::PolicyRun {
    pb::PolicyRun {
        id: r.id,
        policy: r.policy,
        volume_id: r.volume_id,
        slot: format_unix_millis(r.slot_ms),
        node: r.node,
        backup_id: r.backup_id,
        outcome: r.outcome.to_string(),
        error: r.error,
        pruned: r
            .pruned
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        copied_to: r.copied_to,
        started_at: r.started_at,
        finished_at: r.finished_at,
    }
}

#[tonic::async_trait]
impl PolicyService for PolicyApi {
    async fn create_policy(
        &self,
        req: Request<pb::CreatePolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let created = api.svc.create_policy(
                &who,
                PolicyRecord {
                    name: r.name,
                    schedule: r.schedule,
                    incremental: r.incremental,
                    full_every: r.full_every,
                    keep_last: r.keep_last,
                    keep_days: r.keep_days,
                    copy_to: r.copy_to,
                    ..Default::default()
                },
            )?;
            Ok(policy(created))
        })
        .await
    }

    async fn list_policies(
        &self,
        req: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let who = caller(&req)?;
        blocking(&self.api, move |api| {
            Ok(pb::ListPoliciesResponse {
                policies: api
                    .svc
                    .list_policies(&who)?
                    .into_iter()
                    .map(policy)
                    .collect(),
            })
        })
        .await
    }

    async fn get_policy(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            Ok(view(api.svc.get_policy(&who, &r.name)?))
        })
        .await
    }

    async fn delete_policy(
        &self,
        req: Request<pb::DeletePolicyRequest>,
    ) -> Result<Response<pb::DeletePolicyResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            api.svc.delete_policy(&who, &r.name)?;
            Ok(pb::DeletePolicyResponse {})
        })
        .await
    }

    async fn assign_policy(
        &self,
        req: Request<pb::AssignPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            Ok(view(api.svc.assign_policy(&who, &r.volume, &r.policy)?))
        })
        .await
    }

    async fn unassign_policy(
        &self,
        req: Request<pb::AssignPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            Ok(view(api.svc.unassign_policy(&who, &r.volume, &r.policy)?))
        })
        .await
    }

    async fn run_policy(
        &self,
        req: Request<pb::RunPolicyRequest>,
    ) -> Result<Response<pb::RunPolicyResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            Ok(pb::RunPolicyResponse {
                runs: api
                    .svc
                    .run_policy(&who, &r.name, r.wait)?
                    .into_iter()
                    .map(run)
                    .collect(),
            })
        })
        .await
    }
}
