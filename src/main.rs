//! `blockdelta`: the server (`blockdelta serve`) and a CLI that is a gRPC client
//! of it. Every client subcommand is one or a few RPCs of
//! proto/blockdelta/v1/backup.proto; names match the RPCs.
//!
//! A failing call exits with status 1 and prints `error: CODE: message`, CODE
//! being the gRPC code name (INVALID_ARGUMENT, NOT_FOUND, ...).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use blockdelta::api::pb;
use blockdelta::api::pb::backup_service_client::BackupServiceClient;
use blockdelta::api::pb::volume_service_client::VolumeServiceClient;
use blockdelta::config::{Config, Overrides};
use blockdelta::engine::Service;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tonic::transport::Channel;

#[derive(Parser)]
#[command(
    name = "blockdelta",
    version,
    about = "Block-volume backups with exact 4 KiB change bitmaps"
)]
struct Cli {
    /// gRPC address of the server, for client commands.
    #[arg(
        long,
        global = true,
        env = "BLOCKDELTA_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Print one JSON object per record instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: catalog, repository and gRPC (defaults need no arguments).
    Serve(ServeArgs),
    /// Managed and registered volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Full and incremental backups, restore, verify.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Remove repository packs that no backup references.
    Gc,
    /// Rebuild missing catalog records from the repository alone.
    Recover {
        /// The server's repository folder (DATA_DIR/repository).
        #[arg(long)]
        repository: Option<String>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "BLOCKDELTA_CONFIG")]
    config: Option<PathBuf>,
    /// Catalog, repository and managed volumes [default: ./blockdelta-data].
    #[arg(long, env = "BLOCKDELTA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051]; port 0 picks a free port.
    #[arg(long, env = "BLOCKDELTA_GRPC_LISTEN")]
    grpc_listen: Option<String>,
    /// iSCSI listen address [default: 127.0.0.1:3260].
    #[arg(long, env = "BLOCKDELTA_ISCSI_LISTEN")]
    iscsi_listen: Option<String>,
}

#[derive(Subcommand)]
enum VolumeCommand {
    /// A managed sparse volume under the data directory.
    Create {
        #[arg(long)]
        name: String,
        /// Bytes, or with a suffix: K, M, G, T (KiB, MiB, GiB, TiB).
        #[arg(long, value_parser = parse_size)]
        size: u64,
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
    /// One volume (id or name), with its path, size and status.
    Show { volume: String },
    /// Remove a volume (a managed volume's file too); its backups stay.
    Delete { volume: String },
}

#[derive(Subcommand)]
enum BackupCommand {
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
    /// Delete a backup; refused while incrementals depend on the backup.
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
    /// The backup's change bitmap as runs of 4 KiB tracking blocks.
    ChangedBlocks { id: String },
    /// The backup's allocated (non-zero) tracking blocks as runs.
    AllocatedBlocks { id: String },
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("size {s:?} must be a whole number with an optional K/M/G/T suffix")
    })?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        "t" | "tib" | "tb" => 40,
        "p" | "pib" | "pb" => 50,
        other => return Err(format!("unknown size unit {other:?} (use K, M, G, T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(st) => eprintln!("error: {}: {}", code_name(st.code()), st.message()),
                None => eprintln!("error: {e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Volume(cmd) => {
            let channel = connect(&cli.server).await?;
            volume_command(VolumeServiceClient::new(channel), cmd, cli.json).await
        }
        Command::Backup(cmd) => {
            let channel = connect(&cli.server).await?;
            backup_command(channel, cmd, cli.json).await
        }
        Command::Gc => {
            let mut c = BackupServiceClient::new(connect(&cli.server).await?);
            let r = c
                .collect_garbage(pb::CollectGarbageRequest {})
                .await?
                .into_inner();
            if cli.json {
                println!(
                    "{}",
                    json!({"packs_removed": r.packs_removed, "bytes_removed": r.bytes_removed})
                );
            } else {
                println!(
                    "removed {} packs, {}",
                    r.packs_removed,
                    human(r.bytes_removed)
                );
            }
            Ok(())
        }
        Command::Recover { repository } => {
            let mut c = BackupServiceClient::new(connect(&cli.server).await?);
            let r = c
                .recover_catalog(pb::RecoverCatalogRequest {
                    repository: repository.unwrap_or_default(),
                })
                .await?
                .into_inner();
            if cli.json {
                println!(
                    "{}",
                    json!({"volumes_recovered": r.volumes_recovered, "backups_recovered": r.backups_recovered, "messages": r.messages})
                );
            } else {
                println!(
                    "recovered {} volumes, {} backups",
                    r.volumes_recovered, r.backups_recovered
                );
                for m in r.messages {
                    println!("  {m}");
                }
            }
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Config::load(
        args.config.as_deref(),
        Overrides {
            data_dir: args.data_dir,
            grpc_listen: args.grpc_listen,
            iscsi_listen: args.iscsi_listen,
        },
    )?;
    let data_dir = config.data_dir.clone();
    let svc = tokio::task::spawn_blocking(move || Service::open(&data_dir))
        .await?
        .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(&config.grpc_listen)
        .await
        .with_context(|| format!("binding gRPC on {}", config.grpc_listen))?;
    let addr = listener.local_addr()?;
    println!("grpc listening on {addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), iscsi_listen = %config.iscsi_listen, "blockdelta serving");
    blockdelta::api::serve(svc.clone(), listener, shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!("gRPC server: {e}"))?;
    tracing::info!("shutting down: interrupting running jobs");
    tokio::task::spawn_blocking(move || svc.shutdown()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn connect(server: &str) -> anyhow::Result<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(server.to_string())
        .map_err(|e| tonic::Status::invalid_argument(format!("bad --server {server:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5));
    endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("cannot reach {server}: {e}")).into())
}

async fn volume_command(
    mut c: VolumeServiceClient<Channel>,
    cmd: VolumeCommand,
    json: bool,
) -> anyhow::Result<()> {
    match cmd {
        VolumeCommand::Create { name, size } => {
            let v = c
                .create_volume(pb::CreateVolumeRequest { name, size })
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
        VolumeCommand::Delete { volume } => {
            let r = c
                .delete_volume(pb::DeleteVolumeRequest { volume })
                .await?
                .into_inner();
            if json {
                println!("{}", json!({"id": r.id, "status": "deleted"}));
            } else {
                println!("deleted volume {}", r.id);
            }
        }
    }
    Ok(())
}

async fn backup_command(channel: Channel, cmd: BackupCommand, json: bool) -> anyhow::Result<()> {
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
            for b in list.backups {
                print_backup(&b, json, false);
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
            if wait {
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
                    println!("{}", json!({"id": id, "status": "deleted"}));
                } else {
                    println!("deleted backup {id}");
                }
            } else {
                print_backup(&b, json, true);
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
                let mut vc = VolumeServiceClient::new(channel);
                v = wait_volume(&mut vc, &v.id).await?;
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
        BackupCommand::Verify { id } => {
            let r = c
                .verify_backup(pb::VerifyBackupRequest { id })
                .await?
                .into_inner();
            if json {
                println!(
                    "{}",
                    json!({"id": r.id, "ok": r.ok, "frames_checked": r.frames_checked, "blocks_checked": r.blocks_checked, "content_hash": r.content_hash})
                );
            } else {
                println!(
                    "backup {} verified: {} frames, {} blocks, content {}",
                    r.id, r.frames_checked, r.blocks_checked, r.content_hash
                );
            }
        }
        BackupCommand::ChangedBlocks { id } => {
            let r = c
                .list_changed_blocks(pb::ListChangedBlocksRequest { id })
                .await?
                .into_inner();
            print_runs(&r, json);
        }
        BackupCommand::AllocatedBlocks { id } => {
            let r = c
                .list_allocated_blocks(pb::ListChangedBlocksRequest { id })
                .await?
                .into_inner();
            print_runs(&r, json);
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_volume(c: &mut VolumeServiceClient<Channel>, id: &str) -> anyhow::Result<pb::Volume> {
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

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
struct Progress {
    tty: bool,
}

impl Progress {
    fn new() -> Progress {
        // SAFETY: isatty only inspects the descriptor.
        Progress {
            tty: unsafe { libc::isatty(2) } == 1,
        }
    }

    fn show(&self, done: u64, total: u64) {
        if !self.tty || total == 0 {
            return;
        }
        let pct = (done.min(total) as f64 / total as f64 * 100.0) as usize;
        let filled = pct * 30 / 100;
        eprint!(
            "\r[{}{}] {pct:3}% {} / {}   ",
            "#".repeat(filled),
            " ".repeat(30 - filled),
            human(done),
            human(total)
        );
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn volume_json(v: &pb::Volume) -> serde_json::Value {
    json!({
        "id": v.id, "name": v.name, "kind": v.kind, "path": v.path, "size": v.size,
        "status": v.status, "created_at": v.created_at, "error": v.error,
        "progress_done": v.progress_done, "progress_total": v.progress_total,
    })
}

fn print_volume(v: &pb::Volume, json: bool, detailed: bool) {
    if json {
        println!("{}", volume_json(v));
    } else if detailed {
        println!("id:         {}", v.id);
        println!("name:       {}", v.name);
        println!("kind:       {}", v.kind);
        println!("status:     {}", v.status);
        println!("size:       {} ({} bytes)", human(v.size), v.size);
        println!("path:       {}", v.path);
        println!("created_at: {}", v.created_at);
        if !v.error.is_empty() {
            println!("error:      {}", v.error);
        }
    } else {
        println!(
            "{}  {:<20} {:<10} {:>10}  {:<10} {}",
            v.id,
            v.name,
            v.kind,
            human(v.size),
            v.status,
            v.path
        );
    }
}

fn print_backup(b: &pb::Backup, json: bool, detailed: bool) {
    let parent = if b.parent_id.is_empty() {
        "-"
    } else {
        &b.parent_id
    };
    if json {
        println!(
            "{}",
            json!({
                "id": b.id, "status": b.status, "kind": b.kind,
                "parent": if b.parent_id.is_empty() { serde_json::Value::Null } else { json!(b.parent_id) },
                "volume": b.volume_id, "name": b.name, "size": b.size, "created_at": b.created_at,
                "completed_at": b.completed_at, "compression": b.compression, "chain": b.chain_id,
                "changed_blocks": b.changed_blocks, "allocated_blocks": b.allocated_blocks,
                "stored_bytes": b.stored_bytes, "content_hash": b.content_hash, "error": b.error,
                "progress_done": b.progress_done, "progress_total": b.progress_total,
            })
        );
    } else if detailed {
        println!("id:             {}", b.id);
        println!("name:           {}", b.name);
        println!("kind:           {}", b.kind);
        println!("status:         {}", b.status);
        println!("volume:         {}", b.volume_id);
        println!("parent:         {parent}");
        println!("size:           {} ({} bytes)", human(b.size), b.size);
        println!(
            "progress:       {} / {}",
            human(b.progress_done),
            human(b.progress_total)
        );
        println!("changed blocks: {}", b.changed_blocks);
        println!("stored:         {}", human(b.stored_bytes));
        println!("compression:    {}", b.compression);
        println!("created_at:     {}", b.created_at);
        if !b.error.is_empty() {
            println!("error:          {}", b.error);
        }
    } else {
        println!(
            "{}  {:<11} {:<10} {}  parent {:<20} changed {:>9}  {}",
            b.id, b.kind, b.status, b.volume_id, parent, b.changed_blocks, b.created_at
        );
    }
}

fn print_runs(r: &pb::BlockRuns, json: bool) {
    if json {
        let runs: Vec<[u64; 2]> = r.runs.iter().map(|x| [x.start, x.count]).collect();
        println!(
            "{}",
            json!({"id": r.id, "tracking_block_size": r.tracking_block_size, "total_blocks": r.total_blocks, "runs": runs})
        );
    } else {
        let n: u64 = r.runs.iter().map(|x| x.count).sum();
        println!(
            "# backup {}: {n} of {} tracking blocks of {} bytes",
            r.id, r.total_blocks, r.tracking_block_size
        );
        for x in &r.runs {
            if x.count == 1 {
                println!("{}", x.start);
            } else {
                println!("{}-{}", x.start, x.start + x.count - 1);
            }
        }
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("64T"), Ok(64 << 40));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999T").is_err());
    }
}
