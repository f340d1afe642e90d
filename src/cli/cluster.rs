//! `blockdelta service list`: the nodes sharing the catalog (cinder's `volume service
//! list`), and finding the node a call must go to (`volume attach --node`).

use clap::Subcommand;
use serde_json::json;

use blockdelta::api::pb;
use blockdelta::api::pb::volume_service_client::VolumeServiceClient;

use super::{Channel, ClientTls, Credentials};

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Every node: name, gRPC and iSCSI addresses, version, state (up/down), last heartbeat.
    List,
}

async fn services(channel: Channel) -> anyhow::Result<Vec<pb::Service>> {
    Ok(VolumeServiceClient::new(channel)
        .list_services(pb::ListServicesRequest {})
        .await?
        .into_inner()
        .services)
}

pub async fn run(channel: Channel, cmd: ServiceCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        ServiceCommand::List => {
            let all = services(channel).await?;
            if json {
                // One record per line, as every list prints.
                for s in &all {
                    outln!(
                        "{}",
                        json!({"name": s.name, "grpc_address": s.grpc_address,
                            "iscsi_address": s.iscsi_address, "version": s.version,
                            "state": s.state, "heartbeat_at": s.heartbeat_at,
                            "started_at": s.started_at, "jobs": s.jobs})
                    );
                }
            } else {
                outln!(
                    "{:<20} {:<22} {:<22} {:<8} {:<5} {:>4}  HEARTBEAT",
                    "NAME",
                    "GRPC",
                    "ISCSI",
                    "VERSION",
                    "STATE",
                    "JOBS"
                );
                for s in &all {
                    outln!(
                        "{:<20} {:<22} {:<22} {:<8} {:<5} {:>4}  {}",
                        s.name,
                        s.grpc_address,
                        s.iscsi_address,
                        s.version,
                        s.state,
                        s.jobs,
                        s.heartbeat_at
                    );
                }
            }
        }
    }
    Ok(())
}

/// A connection to the node named, found through the server `channel` reaches.
pub async fn channel_to_node(
    channel: Channel,
    node: &str,
    tls: &ClientTls,
    credentials: Credentials,
) -> anyhow::Result<Channel> {
    let all = services(channel.clone()).await?;
    let Some(found) = all.iter().find(|s| s.name == node) else {
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "no node named {node:?} in this cluster (nodes: {})",
            names.join(", ")
        );
    };
    if found.state != "up" {
        anyhow::bail!(
            "node {node} is {} (last heartbeat {}): choose another node",
            found.state,
            found.heartbeat_at
        );
    }
    super::connect(&found.grpc_address, tls, credentials).await
}
