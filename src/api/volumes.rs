//! `blockdelta.v1.VolumeService`: thin adapter over `engine::Service`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::pb::volume_service_server::VolumeService;
use super::{blocking, convert, pb};
use crate::engine::Service;

pub struct VolumeApi {
    pub svc: Arc<Service>,
}

#[tonic::async_trait]
impl VolumeService for VolumeApi {
    async fn create_volume(
        &self,
        req: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            let v = svc.create_volume(&r.name, r.size)?;
            Ok(convert::volume(svc, v))
        })
        .await
    }

    async fn register_volume(
        &self,
        req: Request<pb::RegisterVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            let v = svc.register_volume(&r.name, &r.path)?;
            Ok(convert::volume(svc, v))
        })
        .await
    }

    async fn list_volumes(
        &self,
        _req: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        blocking(&self.svc, move |svc| {
            let volumes = svc
                .list_volumes()?
                .into_iter()
                .map(|v| convert::volume(svc, v))
                .collect();
            Ok(pb::ListVolumesResponse { volumes })
        })
        .await
    }

    async fn get_volume(
        &self,
        req: Request<pb::GetVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            Ok(convert::volume(svc, svc.get_volume(&r.volume)?))
        })
        .await
    }

    async fn delete_volume(
        &self,
        req: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            let v = svc.delete_volume(&r.volume)?;
            Ok(pb::DeleteVolumeResponse { id: v.id })
        })
        .await
    }
}
