//! `blockdelta volume …` and `blockdelta audit`.

use std::path::PathBuf;
use std::time::Duration;

use super::Channel;
use clap::Subcommand;
use serde_json::json;

use super::output::{print_attachment, print_volume, volume_header};
use super::{Progress, parse_size};
use blockdelta::api::pb;
use blockdelta::api::pb::volume_service_client::VolumeServiceClient;

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// A managed sparse volume (--size), or a delta volume (--from-delta).
    Create {
        /// Name [default for a delta volume: its id].
        #[arg(long)]
        name: Option<String>,
        /// Bytes, or with a suffix: K, M, G, T (KiB, MiB, GiB, TiB).
        #[arg(long, value_parser = parse_size, required_unless_present = "from_delta", conflicts_with = "from_delta")]
        size: Option<u64>,
        /// The blocks that changed between --first-backup and --second-backup:
        /// read-only, changed blocks hold the second backup's data, the rest
        /// reads as zeros.
        #[arg(long, requires_all = ["first_backup", "second_backup"])]
        from_delta: bool,
        /// The older backup.
        #[arg(long, requires = "from_delta")]
        first_backup: Option<String>,
        /// The newer backup: an incremental of the same chain.
        #[arg(long, requires = "from_delta")]
        second_backup: Option<String>,
        /// Power of two from 4096 to 1048576 bytes.
        #[arg(long, default_value_t = 4096, requires = "from_delta")]
        change_block_size: u64,
        /// Oracle's performance units per GB (0 = Lower Cost, which delta volumes cannot have).
        #[arg(long, requires = "from_delta", allow_negative_numbers = true)]
        vpus_per_gb: Option<i64>,
        /// The source type, as Oracle's API names it.
        #[arg(long, default_value = "volumeBackupDelta", requires = "from_delta")]
        source_type: String,
    },
    /// An existing raw file or block device, backed up in place.
    Register {
        #[arg(long)]
        name: String,
        #[arg(long)]
        path: PathBuf,
    },
    /// All volumes.
    List,
    /// One volume (id or name), with its path, size, status, source and attachment.
    Show { volume: String },
    /// Remove a volume (a managed volume's file too); its backups stay.
    Delete {
        volume: String,
        /// Delete an attached volume: its iSCSI sessions end.
        #[arg(long)]
        force: bool,
    },
    /// Export the volume on the server's iSCSI target (target name, LUN 0).
    Attach {
        volume: String,
        /// Only this initiator IQN may log in.
        #[arg(long)]
        initiator: Option<String>,
        /// Require CHAP; the server prints the credentials it generated.
        #[arg(long)]
        chap: bool,
        /// Logical block size of the LUN: 512 or 4096.
        #[arg(long, default_value_t = 512)]
        block_size: u32,
        /// Export read-only (delta volumes always are).
        #[arg(long)]
        read_only: bool,
        /// The node whose target is to serve it (see `service list`); the CLI sends the
        /// call there [default: the node --server names].
        #[arg(long)]
        node: Option<String>,
    },
    /// Remove the volume's export.
    Detach {
        volume: String,
        /// Detach even with initiators logged in: their sessions end.
        #[arg(long)]
        force: bool,
    },
}

impl VolumeCommand {
    /// The node a command must be sent to, when it names one.
    pub fn node(&self) -> Option<&str> {
        match self {
            VolumeCommand::Attach { node, .. } => node.as_deref(),
            _ => None,
        }
    }
}

pub async fn run(channel: Channel, cmd: VolumeCommand, json: bool) -> anyhow::Result<()> {
    let mut c = VolumeServiceClient::new(channel);
    match cmd {
        VolumeCommand::Create {
            name,
            size,
            from_delta,
            first_backup,
            second_backup,
            change_block_size,
            vpus_per_gb,
            source_type,
        } => {
            let source_details = from_delta.then(|| pb::VolumeSourceDetails {
                r#type: source_type,
                first_backup_id: first_backup.unwrap_or_default(),
                second_backup_id: second_backup.unwrap_or_default(),
                change_block_size_in_bytes: change_block_size,
            });
            let v = c
                .create_volume(pb::CreateVolumeRequest {
                    name: name.unwrap_or_default(),
                    size: size.unwrap_or_default(),
                    source_details,
                    vpus_per_gb,
                })
                .await?
                .into_inner();
            print_volume(&v, json, true);
        }
        VolumeCommand::Register { name, path } => {
            let path = std::path::absolute(&path).unwrap_or(path);
            let v = c
                .register_volume(pb::RegisterVolumeRequest {
                    name,
                    path: path.display().to_string(),
                })
                .await?
                .into_inner();
            print_volume(&v, json, true);
        }
        VolumeCommand::List => {
            if !json {
                volume_header();
            }
            for v in c
                .list_volumes(pb::ListVolumesRequest {})
                .await?
                .into_inner()
                .volumes
            {
                print_volume(&v, json, false);
            }
        }
        VolumeCommand::Show { volume } => {
            let v = c
                .get_volume(pb::GetVolumeRequest { volume })
                .await?
                .into_inner();
            print_volume(&v, json, true);
        }
        VolumeCommand::Delete { volume, force } => {
            let r = c
                .delete_volume(pb::DeleteVolumeRequest { volume, force })
                .await?
                .into_inner();
            if json {
                outln!("{}", json!({"id": r.id, "status": "deleted"}));
            } else {
                outln!("deleted volume {}", r.id);
            }
        }
        VolumeCommand::Attach {
            volume,
            initiator,
            chap,
            block_size,
            read_only,
            node,
        } => {
            let a = c
                .attach_volume(pb::AttachVolumeRequest {
                    node: node.unwrap_or_default(),
                    volume,
                    initiator: initiator.unwrap_or_default(),
                    chap,
                    block_size,
                    read_only,
                })
                .await?
                .into_inner();
            print_attachment(&a, json);
        }
        VolumeCommand::Detach { volume, force } => {
            let r = c
                .detach_volume(pb::DetachVolumeRequest { volume, force })
                .await?
                .into_inner();
            let v = r.volume.unwrap_or_default();
            if json {
                outln!(
                    "{}",
                    json!({"id": v.id, "status": v.status, "sessions_ended": r.sessions_ended})
                );
            } else {
                outln!(
                    "detached volume {} ({} sessions ended)",
                    v.id,
                    r.sessions_ended
                );
            }
        }
    }
    Ok(())
}

/// `blockdelta audit`: the audit log as JSON lines.
pub async fn audit(channel: Channel, id: Option<String>) -> anyhow::Result<()> {
    let mut c = VolumeServiceClient::new(channel);
    let r = c
        .list_audit_events(pb::ListAuditEventsRequest {
            id: id.unwrap_or_default(),
        })
        .await?
        .into_inner();
    for line in r.events {
        outln!("{line}");
    }
    Ok(())
}

/// Polls a volume until it leaves `restoring`, drawing progress.
pub async fn wait_volume(channel: Channel, id: &str) -> anyhow::Result<pb::Volume> {
    let mut c = VolumeServiceClient::new(channel);
    let bar = Progress::new();
    loop {
        let v = c
            .get_volume(pb::GetVolumeRequest {
                volume: id.to_string(),
            })
            .await?
            .into_inner();
        bar.show(v.progress_done, v.progress_total);
        if v.status != "restoring" {
            bar.finish();
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
