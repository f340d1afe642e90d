//! `blockdelta backup …`, `blockdelta gc`, `blockdelta recover`.

use std::time::Duration;

use super::Channel;
use clap::Subcommand;
use serde_json::json;

use super::changed::{Listing, fetch};
use super::output::{backup_header, backup_row, human, print_backup, print_extents, print_volume};
use super::{Progress, volumes};
use blockdelta::api::pb;
use blockdelta::api::pb::backup_service_client::BackupServiceClient;
use blockdelta::api::pb::volume_service_client::VolumeServiceClient;

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Start a backup of VOLUME (id or name).
    Create {
        volume: String,
        #[arg(long)]
        name: Option<String>,
        /// On the newest available backup of the volume's newest chain.
        #[arg(long)]
        incremental: bool,
        /// Back up a volume that is in use or not available.
        #[arg(long)]
        force: bool,
        /// none | zlib | bz2 | zstd
        #[arg(long, default_value = "zstd")]
        compression: String,
        /// Wait for the backup to finish, showing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Backups, oldest first, optionally of one volume.
    List {
        #[arg(long)]
        volume: Option<String>,
    },
    /// One backup, with progress while it runs.
    Show { id: String },
    /// Delete a backup; refused while incrementals or delta volumes depend on it.
    Delete {
        id: String,
        /// Cancel a running backup and remove what it wrote.
        #[arg(long)]
        force: bool,
        /// Wait until the backup is gone.
        #[arg(long)]
        wait: bool,
    },
    /// Restore onto a new managed volume, or onto an existing one with --volume.
    Restore {
        id: String,
        #[arg(long)]
        volume: Option<String>,
        /// Name of the new volume (without --volume).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Read and check everything a restore of the backup needs.
    Verify { id: String },
    /// Stop the restore running onto VOLUME (id or name): it ends `error` "restore
    /// cancelled"; answers once the restore has stopped.
    #[command(name = "restore-cancel")]
    RestoreCancel { volume: String },
    /// Make the backup a synthetic full (kind `full`, marked merged) from its chain's
    /// metadata and remove the backups before it; `gc` then reclaims their frames.
    Merge { id: String },
    /// Copy the backup, and what of its chain the destination lacks, to another
    /// repository (a directory or s3://BUCKET/PREFIX on the server; admins only).
    Copy {
        id: String,
        #[arg(long)]
        to: String,
    },
    /// Print the backup's record (cinder's export-record): backup_service and backup_url,
    /// for `backup import` on a server sharing the repository (admins only).
    Export { id: String },
    /// Re-create an exported backup's catalog rows, and its chain's, from the repository
    /// (cinder's import-record; admins only).
    Import { service: String, url: String },
    /// The backup's change bitmap (against its parent) as extents.
    ChangedBlocks {
        id: String,
        /// Block size of the listing, a power of two from 4096 to 1048576.
        #[arg(long, default_value_t = 4096)]
        block_size: u64,
    },
    /// The backup's allocated (non-zero) blocks as extents.
    AllocatedBlocks {
        id: String,
        #[arg(long, default_value_t = 4096)]
        block_size: u64,
    },
}

pub async fn run(channel: Channel, cmd: BackupCommand, json: bool) -> anyhow::Result<()> {
    let mut c = BackupServiceClient::new(channel.clone());
    match cmd {
        BackupCommand::Create {
            volume,
            name,
            incremental,
            force,
            compression,
            wait,
        } => {
            let mut b = c
                .create_backup(pb::CreateBackupRequest {
                    volume,
                    name: name.unwrap_or_default(),
                    incremental,
                    force,
                    compression,
                })
                .await?
                .into_inner();
            if wait {
                b = wait_backup(&mut c, &b.id, "creating").await?;
                print_backup(&b, json, true);
                if b.status != "available" {
                    anyhow::bail!("backup {} ended {}: {}", b.id, b.status, b.error);
                }
            } else {
                print_backup(&b, json, true);
            }
        }
        BackupCommand::List { volume } => {
            let list = c
                .list_backups(pb::ListBackupsRequest {
                    volume: volume.unwrap_or_default(),
                })
                .await?
                .into_inner();
            if json {
                for b in list.backups {
                    print_backup(&b, json, false);
                }
            } else {
                // Names beside ids: the volumes the caller can see.
                let names: std::collections::HashMap<String, String> =
                    VolumeServiceClient::new(channel.clone())
                        .list_volumes(pb::ListVolumesRequest {})
                        .await?
                        .into_inner()
                        .volumes
                        .into_iter()
                        .map(|v| (v.id, v.name))
                        .collect();
                outln!("{}", backup_header());
                for b in list.backups {
                    let name = names.get(&b.volume_id).map_or("", String::as_str);
                    outln!("{}", backup_row(&b, name));
                }
            }
        }
        BackupCommand::Show { id } => {
            let b = c
                .get_backup(pb::GetBackupRequest { id })
                .await?
                .into_inner();
            print_backup(&b, json, true);
        }
        BackupCommand::Delete { id, force, wait } => {
            let b = c
                .delete_backup(pb::DeleteBackupRequest {
                    id: id.clone(),
                    force,
                })
                .await?
                .into_inner();
            if !wait {
                print_backup(&b, json, true);
                return Ok(());
            }
            loop {
                match c.get_backup(pb::GetBackupRequest { id: id.clone() }).await {
                    Err(st) if st.code() == tonic::Code::NotFound => break,
                    Err(st) => return Err(st.into()),
                    Ok(r) if r.get_ref().status == "error" => {
                        anyhow::bail!("deleting backup {id} failed: {}", r.get_ref().error)
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            if json {
                outln!("{}", json!({"id": id, "status": "deleted"}));
            } else {
                outln!("deleted backup {id}");
            }
        }
        BackupCommand::Restore {
            id,
            volume,
            name,
            wait,
        } => {
            let r = c
                .restore_backup(pb::RestoreBackupRequest {
                    id,
                    volume: volume.unwrap_or_default(),
                    name: name.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let mut v = r.volume.unwrap_or_default();
            if wait {
                v = volumes::wait_volume(channel, &v.id).await?;
                print_volume(&v, json, true);
                if v.status != "available" {
                    anyhow::bail!(
                        "restore onto volume {} ended {}: {}",
                        v.id,
                        v.status,
                        v.error
                    );
                }
            } else {
                print_volume(&v, json, true);
            }
        }
        BackupCommand::RestoreCancel { volume } => {
            let v = c
                .cancel_restore(pb::CancelRestoreRequest { volume })
                .await?
                .into_inner();
            print_volume(&v, json, true);
        }
        BackupCommand::Merge { id } => {
            let b = c
                .merge_backup(pb::MergeBackupRequest { id })
                .await?
                .into_inner();
            print_backup(&b, json, true);
        }
        BackupCommand::Copy { id, to } => {
            let r = c
                .copy_backup(pb::CopyBackupRequest { id, to })
                .await?
                .into_inner();
            let id = r.backup.as_ref().map(|b| b.id.as_str()).unwrap_or_default();
            if json {
                outln!(
                    "{}",
                    json!({"id": id, "to": r.to, "objects": r.objects, "bytes": r.bytes})
                );
            } else {
                outln!(
                    "backup {id} copied to {}: {} objects, {}",
                    r.to,
                    r.objects,
                    human(r.bytes)
                );
            }
        }
        BackupCommand::Export { id } => {
            let r = c
                .export_backup_record(pb::ExportBackupRecordRequest { id })
                .await?
                .into_inner();
            if json {
                outln!(
                    "{}",
                    json!({"backup_service": r.backup_service, "backup_url": r.backup_url})
                );
            } else {
                outln!("backup_service: {}", r.backup_service);
                outln!("backup_url:     {}", r.backup_url);
            }
        }
        BackupCommand::Import { service, url } => {
            let b = c
                .import_backup_record(pb::BackupRecordExport {
                    backup_service: service,
                    backup_url: url,
                })
                .await?
                .into_inner();
            print_backup(&b, json, true);
        }
        BackupCommand::Verify { id } => {
            let r = c
                .verify_backup(pb::VerifyBackupRequest { id })
                .await?
                .into_inner();
            if json {
                outln!(
                    "{}",
                    json!({"id": r.id, "ok": r.ok, "frames_checked": r.frames_checked, "blocks_checked": r.blocks_checked, "content_hash": r.content_hash})
                );
            } else {
                outln!(
                    "backup {} verified: {} frames, {} blocks, content {}",
                    r.id,
                    r.frames_checked,
                    r.blocks_checked,
                    r.content_hash
                );
            }
        }
        BackupCommand::ChangedBlocks { id, block_size } => {
            let listing = Listing::Changed(pb::ListChangedBlocksRequest {
                second_backup_id: id.clone(),
                block_size,
                ..Default::default()
            });
            let l = fetch(&mut c, listing, usize::MAX, false).await?;
            print_extents(&l, json);
        }
        BackupCommand::AllocatedBlocks { id, block_size } => {
            let listing = Listing::Allocated(pb::ListAllocatedBlocksRequest {
                backup_id: id,
                block_size,
                ..Default::default()
            });
            let l = fetch(&mut c, listing, usize::MAX, false).await?;
            print_extents(&l, json);
        }
    }
    Ok(())
}

async fn wait_backup(
    c: &mut BackupServiceClient<Channel>,
    id: &str,
    while_status: &str,
) -> anyhow::Result<pb::Backup> {
    let bar = Progress::new();
    // Short jobs answer soon: the poll starts at 20 ms and backs off to 200 ms.
    let mut pause = Duration::from_millis(20);
    loop {
        let b = c
            .get_backup(pb::GetBackupRequest { id: id.to_string() })
            .await?
            .into_inner();
        bar.show(b.progress_done, b.progress_total);
        if b.status != while_status {
            bar.finish();
            return Ok(b);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

pub async fn gc(channel: Channel, json: bool) -> anyhow::Result<()> {
    let mut c = BackupServiceClient::new(channel);
    let r = c
        .collect_garbage(pb::CollectGarbageRequest {})
        .await?
        .into_inner();
    if json {
        outln!(
            "{}",
            json!({"packs_removed": r.packs_removed, "bytes_removed": r.bytes_removed})
        );
    } else {
        outln!(
            "removed {} packs, {}",
            r.packs_removed,
            human(r.bytes_removed)
        );
    }
    Ok(())
}

pub async fn recover(
    channel: Channel,
    repository: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut c = BackupServiceClient::new(channel);
    let r = c
        .recover_catalog(pb::RecoverCatalogRequest {
            repository: repository.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if json {
        outln!(
            "{}",
            json!({"volumes_recovered": r.volumes_recovered, "backups_recovered": r.backups_recovered, "messages": r.messages})
        );
    } else {
        outln!(
            "recovered {} volumes, {} backups",
            r.volumes_recovered,
            r.backups_recovered
        );
        for m in r.messages {
            outln!("  {m}");
        }
    }
    Ok(())
}
