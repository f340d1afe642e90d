//! `csi.v1.Identity` (CSI spec): what the Kubernetes external-snapshot-metadata sidecar
//! asks a plugin first, over its unix socket: the plugin's name and version, whether it
//! offers SNAPSHOT_METADATA_SERVICE, whether it is ready. Says nothing about anyone's
//! data, so it needs no token (`identity::rules`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Api;
use super::csi_pb::identity_server::Identity;
use super::csi_pb::plugin_capability::{self, service};
use super::csi_pb::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse,
};

/// The plugin's name, in the reverse-domain form CSI asks for; the sidecar's
/// SnapshotMetadataService object is named after it.
pub const PLUGIN_NAME: &str = "csi.blockdelta.io";

pub struct CsiIdentityApi {
    pub api: Arc<Api>,
}

#[tonic::async_trait]
impl Identity for CsiIdentityApi {
    async fn get_plugin_info(
        &self,
        _req: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: PLUGIN_NAME.into(),
            vendor_version: env!("CARGO_PKG_VERSION").into(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _req: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: vec![PluginCapability {
                r#type: Some(plugin_capability::Type::Service(
                    plugin_capability::Service {
                        r#type: service::Type::SnapshotMetadataService as i32,
                    },
                )),
            }],
        }))
    }

    /// Ready when the catalog answers.
    async fn probe(&self, _req: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let api = self.api.clone();
        let ready = tokio::task::spawn_blocking(move || api.svc.catalog_answers())
            .await
            .map_err(super::status::join_error)?;
        Ok(Response::new(ProbeResponse { ready: Some(ready) }))
    }
}
