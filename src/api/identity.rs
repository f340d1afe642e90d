//! `blockdelta.v1.IdentityService`: projects, tokens, quotas, who am I.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::caller;
use super::pb::identity_service_server::IdentityService;
use super::{Api, ApiError, blocking, pb};
use crate::catalog::{ProjectRecord, TokenRecord};
use crate::identity::quota::{Limits, Usage};
use crate::identity::{QuotaResource, Role};

pub struct IdentityApi {
    pub api: Arc<Api>,
}

fn project(api: &Api, p: ProjectRecord) -> pb::Project {
    pb::Project {
        delta_enabled: p.delta_enabled.unwrap_or(api.delta_enabled),
        name: p.name,
        created_at: p.created_at,
    }
}

fn token(t: TokenRecord) -> pb::Token {
    pb::Token {
        id: t.id,
        project: t.project,
        role: t.role.to_string(),
        created_at: t.created_at,
        last_used_at: t.last_used_at,
        revoked_at: t.revoked_at,
        description: t.description,
    }
}

fn limits(l: &Limits) -> pb::QuotaLimits {
    pb::QuotaLimits {
        volumes: l.volumes,
        gigabytes: l.gigabytes,
        backups: l.backups,
        backup_gigabytes: l.backup_gigabytes,
        delta_volumes: l.delta_volumes,
    }
}

fn usage(u: &Usage) -> pb::QuotaUsage {
    pb::QuotaUsage {
        volumes: u.shown(QuotaResource::Volumes),
        gigabytes: u.shown(QuotaResource::Gigabytes),
        backups: u.shown(QuotaResource::Backups),
        backup_gigabytes: u.shown(QuotaResource::BackupGigabytes),
        delta_volumes: u.shown(QuotaResource::DeltaVolumes),
        volume_bytes: u.volume_bytes,
        backup_bytes: u.backup_bytes,
        stored_bytes: u.stored_bytes,
    }
}

fn role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text).ok_or_else(|| {
        ApiError::InvalidArgument(format!(
            "role {text:?} must be one of admin, member, reader"
        ))
    })
}

/// The project a call names, or the caller's own when it names none.
fn named_or_own(asked: &str, who: &crate::identity::Caller) -> String {
    if asked.is_empty() {
        who.owner().to_string()
    } else {
        asked.to_string()
    }
}

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn create_project(
        &self,
        req: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let p = api.svc.create_project(&who, &r.name, r.delta_enabled)?;
            Ok(project(api, p))
        })
        .await
    }

    async fn list_projects(
        &self,
        req: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        let who = caller(&req)?;
        blocking(&self.api, move |api| {
            let projects = api
                .svc
                .list_projects(&who)?
                .into_iter()
                .map(|p| project(api, p))
                .collect();
            Ok(pb::ListProjectsResponse { projects })
        })
        .await
    }

    async fn delete_project(
        &self,
        req: Request<pb::DeleteProjectRequest>,
    ) -> Result<Response<pb::DeleteProjectResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let tokens = api.svc.list_tokens(&who, Some(&r.name))?;
            api.svc.delete_project(&who, &r.name)?;
            for t in tokens {
                api.auth.forget(&t.id);
            }
            Ok(pb::DeleteProjectResponse { name: r.name })
        })
        .await
    }

    async fn update_project(
        &self,
        req: Request<pb::UpdateProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let p = api.svc.update_project(&who, &r.name, r.delta_enabled)?;
            Ok(project(api, p))
        })
        .await
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreatedToken>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let project = named_or_own(&r.project, &who);
            let new = api
                .svc
                .create_token(&who, &project, role(&r.role)?, &r.description)?;
            Ok(pb::CreatedToken {
                id: new.record.id.clone(),
                token: new.secret,
                record: Some(token(new.record)),
            })
        })
        .await
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let only = (!r.project.is_empty()).then_some(r.project.as_str());
            let tokens = api
                .svc
                .list_tokens(&who, only)?
                .into_iter()
                .map(token)
                .collect();
            Ok(pb::ListTokensResponse { tokens })
        })
        .await
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::Token>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let t = api.svc.revoke_token(&who, &r.id)?;
            api.auth.forget(&t.id);
            Ok(token(t))
        })
        .await
    }

    async fn get_quota(
        &self,
        req: Request<pb::GetQuotaRequest>,
    ) -> Result<Response<pb::Quota>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let project = named_or_own(&r.project, &who);
            let (l, u) = api.svc.quota(&who, &project)?;
            Ok(pb::Quota {
                project,
                limits: Some(limits(&l)),
                usage: r.usage.then(|| usage(&u)),
            })
        })
        .await
    }

    async fn set_quota(
        &self,
        req: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::Quota>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let asked: Vec<(QuotaResource, i64)> = [
                (QuotaResource::Volumes, r.volumes),
                (QuotaResource::Gigabytes, r.gigabytes),
                (QuotaResource::Backups, r.backups),
                (QuotaResource::BackupGigabytes, r.backup_gigabytes),
                (QuotaResource::DeltaVolumes, r.delta_volumes),
            ]
            .into_iter()
            .filter_map(|(res, l)| l.map(|l| (res, l)))
            .collect();
            let project = named_or_own(&r.project, &who);
            let l = api.svc.set_quota(&who, &project, &asked)?;
            Ok(pb::Quota {
                project,
                limits: Some(limits(&l)),
                usage: None,
            })
        })
        .await
    }

    async fn get_quota_defaults(
        &self,
        _req: Request<pb::GetQuotaDefaultsRequest>,
    ) -> Result<Response<pb::Quota>, Status> {
        Ok(Response::new(pb::Quota {
            project: String::new(),
            limits: Some(limits(&Limits::default())),
            usage: None,
        }))
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::Identity>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(pb::Identity {
            token_id: who.token_id,
            project: who.project,
            role: who.role.to_string(),
            acting_for: who.acting_for.unwrap_or_default(),
        }))
    }
}
