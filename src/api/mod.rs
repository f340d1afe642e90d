//! The gRPC surface: `blockdelta.v1.VolumeService` and `blockdelta.v1.BackupService`
//! (proto/blockdelta/v1/), `csi.v1.SnapshotMetadata` (proto/csi/v1/), gRPC health
//! and reflection. Handlers decode and encode; the engine, `delta` and `export`
//! validate, and `status` is the only place errors become status codes.

pub mod auth;
pub mod backups;
pub mod convert;
pub mod csi;
pub mod csi_identity;
pub mod identity;
pub mod metrics;
pub mod policies;
pub mod reports;
pub mod status;
pub mod volumes;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::{Response, Status};

use crate::delta::Deltas;
use crate::engine::Service;
use crate::export::Exports;
pub use status::ApiError;

pub mod pb {
    #![allow(clippy::all)]
    tonic::include_proto!("blockdelta.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("blockdelta_descriptor");
}

pub mod csi_pb {
    #![allow(clippy::all)]
    tonic::include_proto!("csi.v1");
}

/// What every handler works with.
pub struct Api {
    pub svc: Arc<Service>,
    pub exports: Arc<Exports>,
    /// The delta use case: plans, listings, the source of delta volumes.
    pub deltas: Arc<Deltas>,
    /// Delta volumes may be created (the `delta_enabled` setting): each project's
    /// default, which its own setting overrides.
    pub delta_enabled: bool,
    /// Checks every call's token (the layer in front of all services).
    pub auth: Arc<auth::Authenticator>,
}

impl Api {
    pub fn new(
        svc: Arc<Service>,
        exports: Arc<Exports>,
        deltas: Arc<Deltas>,
        delta_enabled: bool,
    ) -> Arc<Api> {
        Arc::new(Api {
            auth: auth::Authenticator::new(svc.clone()),
            svc,
            exports,
            deltas,
            delta_enabled,
        })
    }
}

/// Runs blocking work (SQLite, files, bitmaps) off the reactor and maps its error.
pub(crate) async fn blocking<T: Send + 'static>(
    api: &Arc<Api>,
    f: impl FnOnce(&Api) -> Result<T, ApiError> + Send + 'static,
) -> Result<Response<T>, Status> {
    let api = api.clone();
    // The request's span (its request id) follows the work onto the blocking thread.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| f(&api)))
        .await
        .map_err(status::join_error)?
        .map(Response::new)
        .map_err(status::to_status)
}

/// A server stream whose messages a blocking producer makes: `next` runs on a blocking
/// thread, in the request's span, until it answers `Ok(None)` or an error (sent as the
/// stream's end). At most `ahead` messages wait in between, so a slow client holds the
/// producer back instead of filling memory; a client that goes away stops it.
pub(crate) fn blocking_stream<T: Send + 'static>(
    ahead: usize,
    mut next: impl FnMut() -> Result<Option<T>, Status> + Send + 'static,
) -> std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>> {
    let (tx, rx) = tokio::sync::mpsc::channel(ahead.max(1));
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _request = span.enter();
        loop {
            let msg = match next() {
                Ok(None) => return,
                Ok(Some(m)) => Ok(m),
                Err(e) => Err(e),
            };
            let failed = msg.is_err();
            if tx.blocking_send(msg).is_err() || failed {
                return;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Serves the gRPC services on `listener` (over TLS when `tls` is given) until
/// `shutdown` resolves. Every call but health and reflection needs a token.
pub async fn serve(
    api: Arc<Api>,
    listener: TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use pb::backup_service_server::BackupServiceServer;
    use pb::identity_service_server::IdentityServiceServer;
    use pb::policy_service_server::PolicyServiceServer;
    use pb::report_service_server::ReportServiceServer;
    use pb::volume_service_server::VolumeServiceServer;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<VolumeServiceServer<volumes::VolumeApi>>()
        .await;
    health
        .set_serving::<BackupServiceServer<backups::BackupApi>>()
        .await;
    health
        .set_serving::<csi_pb::snapshot_metadata_server::SnapshotMetadataServer<csi::CsiApi>>()
        .await;
    health
        .set_serving::<IdentityServiceServer<identity::IdentityApi>>()
        .await;
    health
        .set_serving::<PolicyServiceServer<policies::PolicyApi>>()
        .await;
    health
        .set_serving::<ReportServiceServer<reports::ReportApi>>()
        .await;
    // Both reflection versions: grpcurl and most tools ask v1, Python's
    // grpcio-reflection client still asks v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .layer(auth::AuthLayer {
            auth: api.auth.clone(),
        })
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(VolumeServiceServer::new(volumes::VolumeApi {
            api: api.clone(),
        }))
        .add_service(BackupServiceServer::new(backups::BackupApi {
            api: api.clone(),
        }))
        .add_service(IdentityServiceServer::new(identity::IdentityApi {
            api: api.clone(),
        }))
        .add_service(PolicyServiceServer::new(policies::PolicyApi {
            api: api.clone(),
        }))
        .add_service(ReportServiceServer::new(reports::ReportApi {
            api: api.clone(),
        }))
        .add_service(csi_pb::identity_server::IdentityServer::new(
            csi_identity::CsiIdentityApi { api: api.clone() },
        ))
        .add_service(
            csi_pb::snapshot_metadata_server::SnapshotMetadataServer::new(csi::CsiApi { api }),
        )
        // TCP_NODELAY: without it a small response written as separate HTTP/2
        // frames waits for the client's delayed ACK, adding ~40 ms to a call.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}

/// Binds the CSI socket (`serve --csi-socket`), replacing a stale socket file; the file is
/// the owner's only (the umask).
pub fn bind_csi_socket(
    path: &std::path::Path,
) -> Result<tokio::net::UnixListener, Box<dyn std::error::Error + Send + Sync>> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing the stale socket {}: {e}", path.display()).into()),
    }
    Ok(tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("binding the CSI socket {}: {e}", path.display()))?)
}

/// Serves CSI's Identity and SnapshotMetadata on the bound unix socket at `path`, as the
/// Kubernetes sidecar expects its plugin, until `shutdown` resolves; then removes the file.
/// The same rules as on the TCP port: SnapshotMetadata needs a token (header or
/// `secrets`), Identity none.
pub async fn serve_csi_socket(
    api: Arc<Api>,
    listener: tokio::net::UnixListener,
    path: std::path::PathBuf,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let served = tonic::transport::Server::builder()
        .layer(auth::AuthLayer {
            auth: api.auth.clone(),
        })
        .add_service(csi_pb::identity_server::IdentityServer::new(
            csi_identity::CsiIdentityApi { api: api.clone() },
        ))
        .add_service(
            csi_pb::snapshot_metadata_server::SnapshotMetadataServer::new(csi::CsiApi { api }),
        )
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            shutdown,
        )
        .await;
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the CSI socket");
    }
    Ok(served?)
}
