//! `target-emulator`: export one raw file (or block device) over iSCSI.
//!
//! Holes (SEEK_DATA/SEEK_HOLE) are reported as deallocated by GET LBA STATUS; on a writable
//! export UNMAP and WRITE SAME with UNMAP punch holes. Prints the target name and portal on
//! stdout once listening (tests read that line), logs with `tracing` on stderr.

use anyhow::{Context, bail};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use target_emulator::{Authentication, ChapCredentials, Export, FileLun, Target, TargetConfig};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Export a raw file over iSCSI (RFC 7143), with GET LBA STATUS(16/32)"
)]
struct Args {
    /// Raw file or block device to export.
    #[arg(long)]
    file: PathBuf,
    /// Target name; default iqn.2026-11.io.blockdelta:<file stem>.
    #[arg(long)]
    iqn: Option<String>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:3260")]
    portal: SocketAddr,
    /// `host:port` discovery hands out as the target's address, when initiators reach us
    /// elsewhere than --portal (NAT, a container, a wildcard listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// Logical block size in bytes.
    #[arg(long, default_value_t = 512, value_parser = parse_block_size)]
    block_size: u32,
    /// Refuse writes (MODE SENSE WP=1, DATA PROTECT on write).
    #[arg(long)]
    read_only: bool,
    /// CHAP user the initiator must log in with (needs --chap-secret).
    #[arg(long, requires = "chap_secret")]
    chap_user: Option<String>,
    /// CHAP secret for --chap-user.
    #[arg(
        long,
        requires = "chap_user",
        env = "TARGET_EMULATOR_CHAP_SECRET",
        hide_env_values = true
    )]
    chap_secret: Option<String>,
}

fn parse_block_size(s: &str) -> Result<u32, String> {
    match s {
        "512" => Ok(512),
        "4096" => Ok(4096),
        _ => Err(format!("block size must be 512 or 4096, not {s}")),
    }
}

fn default_iqn(file: &std::path::Path) -> String {
    let stem: String = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "iqn.2026-11.io.blockdelta:{}",
        if stem.is_empty() { "disk" } else { &stem }
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let iqn = args.iqn.clone().unwrap_or_else(|| default_iqn(&args.file));
    if !target_emulator::target::valid_name(&iqn) {
        bail!("{iqn:?} is not a valid iSCSI name (iqn.YYYY-MM.domain[:id], lower case)");
    }
    let lun = FileLun::open(&args.file, args.block_size, args.read_only)
        .with_context(|| format!("cannot export {}", args.file.display()))?;
    let auth = match (args.chap_user, args.chap_secret) {
        (Some(user), Some(secret)) => Some(Authentication {
            initiator: ChapCredentials { user, secret },
            target: None,
        }),
        _ => None,
    };
    let target = Target::start(TargetConfig {
        portal: args.portal,
        discovery_auth: None,
        advertise: args.advertise,
    })
    .await
    .with_context(|| format!("cannot listen on {}", args.portal))?;
    target.add_export(
        &iqn,
        Export {
            lun: Arc::new(lun),
            auth,
            allowed_initiators: Vec::new(),
        },
    )?;
    println!("target {iqn} listening on {}", target.local_addr());
    tokio::signal::ctrl_c().await?;
    target.shutdown().await;
    Ok(())
}
