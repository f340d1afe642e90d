//! `blockdelta scan TARGET`: the changed extents of an attached delta volume, found the way
//! Oracle documents (GET LBA STATUS(32) in scans of at most 1 GiB), listed or read into a
//! sparse image. Talks iSCSI itself; needs no server connection.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use blockdelta::scan::{IscsiTarget, scan_iscsi};
use target_emulator::ChapCredentials;

use super::Progress;

#[derive(Args)]
pub struct ScanArgs {
    /// iscsi://HOST:PORT/IQN/LUN (what `volume attach` prints).
    target: String,
    /// Print the changed extents (LBA, blocks, bytes; `--json`: `extents` as [[lba, blocks], …]
    /// plus `block_size`). The default when --out is not given.
    #[arg(long)]
    list: bool,
    /// Read the changed extents into FILE: a sparse image of the medium's size holding
    /// only them, at their offsets.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The initiator name to log in as (an attachment made with --initiator admits only that).
    #[arg(long, default_value = blockdelta::scan::INITIATOR_NAME)]
    initiator: String,
    /// CHAP user name for the login.
    #[arg(long, env = "BLOCKDELTA_CHAP_USER")]
    chap_user: Option<String>,
    /// CHAP secret for the login.
    #[arg(long, env = "BLOCKDELTA_CHAP_SECRET", hide_env_values = true)]
    chap_secret: Option<String>,
}

pub async fn run(args: ScanArgs, json: bool) -> anyhow::Result<()> {
    let target = IscsiTarget::parse(&args.target)?;
    let chap = match (args.chap_user, args.chap_secret) {
        (Some(user), Some(secret)) => Some(ChapCredentials { user, secret }),
        (None, None) => None,
        _ => anyhow::bail!("--chap-user and --chap-secret go together"),
    };
    let bar = Progress::new();
    let outcome = scan_iscsi(
        &target,
        &args.initiator,
        chap,
        args.out.as_deref(),
        &|done, total| bar.show(done, total),
    )
    .await?;
    bar.finish();
    let block = u64::from(outcome.block_size);
    let changed: u64 = outcome.extents.iter().map(|e| e.1).sum::<u64>() * block;
    if json {
        outln!(
            "{}",
            json!({"extents": outcome.extents, "block_size": outcome.block_size,
                "blocks": outcome.blocks, "changed_bytes": changed, "scans": outcome.scans,
                "out": args.out.as_ref().map(|p| p.display().to_string()),
                "bytes_read": outcome.bytes_read})
        );
        return Ok(());
    }
    if args.list || args.out.is_none() {
        outln!("{:<20} {:>12} {:>14}", "LBA", "BLOCKS", "BYTES");
        for (lba, n) in &outcome.extents {
            outln!("{lba:<20} {n:>12} {:>14}", n * block);
        }
    }
    outln!(
        "{} changed extents, {changed} bytes, of {} blocks of {block} bytes ({} scans){}",
        outcome.extents.len(),
        outcome.blocks,
        outcome.scans,
        args.out
            .as_ref()
            .map(|p| format!("; read into {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}
