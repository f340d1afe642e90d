//! `blockdelta.v1.VolumeService`: volumes, delta volumes, attachments, audit log.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::caller;
use super::pb::volume_service_server::VolumeService;
use super::{Api, ApiError, blocking, convert, pb};
use crate::delta::{DeltaError, DeltaRequest};
use crate::export::AttachRequest;
use crate::identity::Caller;

pub struct VolumeApi {
    pub api: Arc<Api>,
}

/// CreateVolume with `source_details`: validate (DESIGN.md §6), compute the delta
/// from bitmaps only (to report its size), record it. No backup data is read.
fn create_delta_volume(
    api: &Api,
    caller: &Caller,
    name: &str,
    details: pb::VolumeSourceDetails,
    vpus_per_gb: Option<i64>,
) -> Result<pb::Volume, ApiError> {
    if !api.svc.delta_enabled(caller.owner(), api.delta_enabled) {
        return Err(DeltaError::Disabled.into());
    }
    let plan = api.deltas.plan(
        caller,
        &DeltaRequest {
            source_type: details.r#type,
            first_backup_id: details.first_backup_id,
            second_backup_id: details.second_backup_id,
            change_block_size: details.change_block_size_in_bytes,
            vpus_per_gb,
        },
    )?;
    let record =
        api.svc
            .create_delta_volume(caller, name, plan.volume_size(), &plan.source_record())?;
    Ok(convert::volume(api, record))
}

#[tonic::async_trait]
impl VolumeService for VolumeApi {
    async fn create_volume(
        &self,
        req: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| match r.source_details {
            Some(details) => create_delta_volume(api, &who, &r.name, details, r.vpus_per_gb),
            None => Ok(convert::volume(
                api,
                api.svc.create_volume(&who, &r.name, r.size)?,
            )),
        })
        .await
    }

    async fn register_volume(
        &self,
        req: Request<pb::RegisterVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let v = api.svc.register_volume(&who, &r.name, &r.path)?;
            Ok(convert::volume(api, v))
        })
        .await
    }

    async fn list_volumes(
        &self,
        req: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let who = caller(&req)?;
        blocking(&self.api, move |api| {
            let volumes = api
                .svc
                .list_volumes(&who)?
                .into_iter()
                .map(|v| convert::volume(api, v))
                .collect();
            Ok(pb::ListVolumesResponse { volumes })
        })
        .await
    }

    async fn get_volume(
        &self,
        req: Request<pb::GetVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            Ok(convert::volume(api, api.svc.get_volume(&who, &r.volume)?))
        })
        .await
    }

    async fn delete_volume(
        &self,
        req: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let v = api.exports.delete_volume(&who, &r.volume, r.force)?;
            Ok(pb::DeleteVolumeResponse { id: v.id })
        })
        .await
    }

    async fn attach_volume(
        &self,
        req: Request<pb::AttachVolumeRequest>,
    ) -> Result<Response<pb::Attachment>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let (a, _) = api.exports.attach(
                &who,
                &r.volume,
                &AttachRequest {
                    node: r.node,
                    initiator: r.initiator,
                    chap: r.chap,
                    block_size: r.block_size,
                    read_only: r.read_only,
                },
            )?;
            Ok(convert::attachment(api, a, 0))
        })
        .await
    }

    async fn detach_volume(
        &self,
        req: Request<pb::DetachVolumeRequest>,
    ) -> Result<Response<pb::DetachVolumeResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let (v, sessions_ended) = api.exports.detach(&who, &r.volume, r.force)?;
            Ok(pb::DetachVolumeResponse {
                volume: Some(convert::volume(api, v)),
                sessions_ended,
            })
        })
        .await
    }

    async fn list_services(
        &self,
        req: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        caller(&req)?;
        blocking(&self.api, move |api| {
            let jobs = api.svc.jobs_by_node()?;
            let services = api
                .svc
                .list_nodes()?
                .into_iter()
                .map(|n| pb::Service {
                    jobs: jobs.get(&n.record.name).copied().unwrap_or(0),
                    name: n.record.name,
                    grpc_address: n.record.grpc_address,
                    iscsi_address: n.record.iscsi_address,
                    version: n.record.version,
                    state: n.state.to_string(),
                    heartbeat_at: n.heartbeat_at,
                    started_at: n.record.started_at,
                })
                .collect();
            Ok(pb::ListServicesResponse { services })
        })
        .await
    }

    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let id = (!r.id.is_empty()).then_some(r.id.as_str());
            Ok(pb::ListAuditEventsResponse {
                events: api.svc.audit_events(&who, id)?,
            })
        })
        .await
    }
}
