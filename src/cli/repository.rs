//! `blockdelta repository copy`: a whole repository into another one (a directory or a
//! bucket), read and written directly, with or without a server running on it.
//!
//! Objects never change once stored, so a copy taken beside a running server is
//! consistent: packs and fingerprints go before the indexes that name them, and a
//! backup appears in the copy only once everything it needs is there.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use blockdelta::config::{Config, Overrides};
use blockdelta::{RepositoryLocation, S3Settings, copy_repository};

use super::output::human;

/// Where the repository is: `serve` and `repository copy` take the same flags.
#[derive(Args)]
pub struct RepositoryArgs {
    /// Where backups are kept: a directory or s3://BUCKET/PREFIX [default: DATA_DIR/repository].
    #[arg(long, env = "BLOCKDELTA_REPOSITORY")]
    pub repository: Option<String>,
    /// S3 endpoint for an s3:// repository, e.g. http://127.0.0.1:8333 [default: AWS].
    #[arg(long, env = "BLOCKDELTA_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: us-east-1].
    #[arg(long, env = "BLOCKDELTA_S3_REGION")]
    pub s3_region: Option<String>,
}

#[derive(Subcommand)]
pub enum RepositoryCommand {
    /// Copy every backup, volume manifest and audit line to another repository (what it
    /// lacks only). `recover` on a server pointed at the copy gives every backup back.
    Copy(CopyArgs),
}

#[derive(Args)]
pub struct CopyArgs {
    /// TOML config file naming the repository to copy.
    #[arg(long, env = "BLOCKDELTA_CONFIG")]
    config: Option<PathBuf>,
    /// The server's data dir [default: ./blockdelta-data].
    #[arg(long, env = "BLOCKDELTA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The repository to copy [default: the configured one].
    #[command(flatten)]
    from: RepositoryArgs,
    /// Where to copy to: a directory or s3://BUCKET/PREFIX (created when missing).
    #[arg(long)]
    to: String,
    /// S3 endpoint of --to [default: --s3-endpoint].
    #[arg(long)]
    to_s3_endpoint: Option<String>,
    /// S3 region of --to [default: --s3-region].
    #[arg(long)]
    to_s3_region: Option<String>,
}

pub async fn run(cmd: RepositoryCommand, json: bool) -> anyhow::Result<()> {
    let RepositoryCommand::Copy(args) = cmd;
    let config = Config::load(
        args.config.as_deref(),
        Overrides {
            data_dir: args.data_dir,
            repository: args.from.repository,
            s3_endpoint: args.from.s3_endpoint,
            s3_region: args.from.s3_region,
            ..Default::default()
        },
    )?;
    let from_location = config.repository_location()?;
    let to_location = RepositoryLocation::parse(&args.to).map_err(anyhow::Error::msg)?;
    if to_location == from_location {
        anyhow::bail!("--to names the repository being copied ({from_location})");
    }
    let from_s3 = config.s3_settings();
    let to_s3 = S3Settings {
        endpoint: args.to_s3_endpoint.or(from_s3.endpoint.clone()),
        region: args.to_s3_region.or(from_s3.region.clone()),
        ..from_s3.clone()
    };
    let report = tokio::task::spawn_blocking(move || {
        copy_repository(&from_location, &from_s3, &to_location, &to_s3)
    })
    .await??;
    let (objects, bytes) = (report.objects, report.bytes);
    if json {
        outln!(
            "{}",
            json!({"objects_copied": objects, "bytes_copied": bytes})
        );
    } else {
        outln!("copied {objects} objects, {} to {}", human(bytes), args.to);
    }
    Ok(())
}
