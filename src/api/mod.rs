//! The gRPC surface: `blockdelta.v1.VolumeService` and `blockdelta.v1.BackupService`
//! (proto/blockdelta/v1/backup.proto), plus gRPC health and reflection. Handlers
//! validate nothing themselves beyond decoding: the engine validates, and
//! `status::to_status` is the only place errors become status codes.

pub mod backups;
pub mod convert;
pub mod status;
pub mod volumes;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::{Response, Status};

use crate::engine::{EngineError, Service};

pub mod pb {
    #![allow(clippy::all)]
    tonic::include_proto!("blockdelta.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("blockdelta_descriptor");
}

/// Runs a blocking engine call off the reactor and maps its error.
pub(crate) async fn blocking<T: Send + 'static>(
    svc: &Arc<Service>,
    f: impl FnOnce(&Arc<Service>) -> Result<T, EngineError> + Send + 'static,
) -> Result<Response<T>, Status> {
    let svc = svc.clone();
    tokio::task::spawn_blocking(move || f(&svc))
        .await
        .map_err(status::join_error)?
        .map(Response::new)
        .map_err(status::to_status)
}

/// Serves the gRPC services on `listener` until `shutdown` resolves.
pub async fn serve(
    svc: Arc<Service>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::volume_service_server::VolumeServiceServer<volumes::VolumeApi>>()
        .await;
    health
        .set_serving::<pb::backup_service_server::BackupServiceServer<backups::BackupApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(pb::volume_service_server::VolumeServiceServer::new(
            volumes::VolumeApi { svc: svc.clone() },
        ))
        .add_service(pb::backup_service_server::BackupServiceServer::new(
            backups::BackupApi { svc },
        ))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
    Ok(())
}
