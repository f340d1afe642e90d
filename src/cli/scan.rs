//! `blockdelta scan TARGET`: the changed extents of an attached delta volume, found the way
//! Oracle documents (GET LBA STATUS(32) in scans of at most 1 GiB), listed, read into a
//! sparse image or written as a checksummed stream. Talks SCSI itself (SG_IO on a device,
//! the built-in initiator on an iscsi:// URL); only `--verify` asks the server.

use std::path::PathBuf;

use super::Channel;
use anyhow::Context;
use clap::Args;
use serde_json::json;

use blockdelta::api::pb;
use blockdelta::api::pb::backup_service_client::BackupServiceClient;
use blockdelta::api::pb::volume_service_client::VolumeServiceClient;
use blockdelta::scan::{Login, Output, ScanOutcome, ScanTarget, scan};
use target_emulator::ChapCredentials;

use super::Progress;
use super::changed::{Listing, fetch};

#[derive(Args)]
pub struct ScanArgs {
    /// A block or sg device (/dev/sdX) of an attached delta volume, or
    /// iscsi://HOST:PORT/IQN/LUN (what `volume attach` prints).
    target: String,
    /// Print the changed extents (LBA, blocks, bytes; `--json`: `extents` as [[lba, blocks], …]
    /// plus `block_size`). The default when neither --out nor --stream is given.
    #[arg(long)]
    list: bool,
    /// Read the changed extents into FILE: a sparse image of the medium's size holding
    /// only them, at their offsets.
    #[arg(long, conflicts_with = "stream")]
    out: Option<PathBuf>,
    /// Write the changed extents to standard output as a framed stream: a header, then
    /// per extent its offset, length, bytes and blake3, then an end frame (see the README).
    #[arg(long)]
    stream: bool,
    /// Check the extents and each one's bytes against the server's ListChangedBlocks and
    /// GetBlockData of the delta volume's backups. VOLUME: the delta volume (default: the
    /// last part of the IQN of an iscsi:// target).
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "VOLUME")]
    verify: Option<String>,
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

impl ScanArgs {
    /// Whether the scan needs the server (`--verify`).
    pub fn verifies(&self) -> bool {
        self.verify.is_some()
    }
}

pub async fn run(args: ScanArgs, server: Option<Channel>, json: bool) -> anyhow::Result<()> {
    let target = ScanTarget::parse(&args.target)?;
    let chap = match (args.chap_user.clone(), args.chap_secret.clone()) {
        (Some(user), Some(secret)) => Some(ChapCredentials { user, secret }),
        (None, None) => None,
        _ => anyhow::bail!("--chap-user and --chap-secret go together"),
    };
    let verify_volume = match (&args.verify, &target) {
        (None, _) => None,
        (Some(v), _) if !v.is_empty() => Some(v.clone()),
        (Some(_), ScanTarget::Iscsi(t)) => Some(t.iqn.rsplit(':').next().unwrap_or("").to_string()),
        (Some(_), ScanTarget::Device(_)) => {
            anyhow::bail!("--verify on a device needs the delta volume: --verify VOLUME")
        }
    };
    // The bar goes to stderr and only on a terminal, so it never mixes with a stream.
    let bar = Progress::new();
    let login = Login {
        initiator_name: args.initiator.clone(),
        chap,
    };
    let mut stdout = std::io::stdout().lock();
    let output = match (&args.out, args.stream) {
        (Some(path), _) => Output::Image(path),
        (None, true) => Output::Stream(&mut stdout),
        (None, false) if verify_volume.is_some() => Output::Discard,
        (None, false) => Output::List,
    };
    let outcome = scan(&target, login, output, &|done, total| bar.show(done, total)).await?;
    bar.finish();
    drop(stdout);
    let verified = match (verify_volume, server) {
        (Some(volume), Some(channel)) => Some(verify(channel, &volume, &outcome).await?),
        (Some(_), None) => anyhow::bail!("--verify needs the server"),
        (None, _) => None,
    };
    if args.stream {
        // Standard output holds the stream; the summary goes to stderr.
        eprintln!("{}", summary(&outcome, &args, verified.as_deref()));
        return Ok(());
    }
    let block = u64::from(outcome.block_size);
    let changed: u64 = outcome.extents.iter().map(|e| e.1).sum::<u64>() * block;
    if json {
        outln!(
            "{}",
            json!({"extents": outcome.extents, "block_size": outcome.block_size,
                "blocks": outcome.blocks, "changed_bytes": changed, "scans": outcome.scans,
                "out": args.out.as_ref().map(|p| p.display().to_string()),
                "bytes_read": outcome.bytes_read, "verified": verified.is_some()})
        );
        return Ok(());
    }
    if args.list || args.out.is_none() {
        outln!("{:<20} {:>12} {:>14}", "LBA", "BLOCKS", "BYTES");
        for (lba, n) in &outcome.extents {
            outln!("{lba:<20} {n:>12} {:>14}", n * block);
        }
    }
    outln!("{}", summary(&outcome, &args, verified.as_deref()));
    Ok(())
}

fn summary(outcome: &ScanOutcome, args: &ScanArgs, verified: Option<&str>) -> String {
    let block = u64::from(outcome.block_size);
    let changed: u64 = outcome.extents.iter().map(|e| e.1).sum::<u64>() * block;
    format!(
        "{} changed extents, {changed} bytes, of {} blocks of {block} bytes ({} scans){}{}",
        outcome.extents.len(),
        outcome.blocks,
        outcome.scans,
        args.out
            .as_ref()
            .map(|p| format!("; read into {}", p.display()))
            .unwrap_or_default(),
        verified
            .map(|v| format!("; verified against {v}"))
            .unwrap_or_default()
    )
}

/// Byte runs, adjacent ones merged.
fn runs(extents: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, len) in extents.filter(|e| e.1 > 0) {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == start => last.1 += len,
            _ => out.push((start, len)),
        }
    }
    out
}

/// Checks the scan against the server: the extents against ListChangedBlocks of the delta
/// volume's backups, each extent's blake3 against GetBlockData of the second. Returns
/// what was checked against.
async fn verify(channel: Channel, volume: &str, outcome: &ScanOutcome) -> anyhow::Result<String> {
    let v = VolumeServiceClient::new(channel.clone())
        .get_volume(pb::GetVolumeRequest {
            volume: volume.to_string(),
        })
        .await
        .with_context(|| format!("--verify: delta volume {volume}"))?
        .into_inner();
    let Some(src) = v.source_details else {
        anyhow::bail!("--verify: {volume} is not a delta volume");
    };
    let mut c = BackupServiceClient::new(channel);
    let listing = fetch(
        &mut c,
        Listing::Changed(pb::ListChangedBlocksRequest {
            first_backup_id: src.first_backup_id.clone(),
            second_backup_id: src.second_backup_id.clone(),
            block_size: src.change_block_size_in_bytes,
            ..Default::default()
        }),
        usize::MAX,
        true,
    )
    .await?;
    let size = listing.volume_size;
    let cbs = listing.block_size;
    let expected = runs(listing.extents.iter().map(|&(start, count)| {
        let from = start * cbs;
        (from, (count * cbs).min(size.saturating_sub(from)))
    }));
    let bs = u64::from(outcome.block_size);
    let scanned = runs(outcome.extents.iter().map(|&(lba, n)| (lba * bs, n * bs)));
    if scanned != expected {
        anyhow::bail!(
            "--verify: the scan found {} extents ({} bytes), the server lists {} ({} bytes) between {} and {}",
            scanned.len(),
            scanned.iter().map(|e| e.1).sum::<u64>(),
            expected.len(),
            expected.iter().map(|e| e.1).sum::<u64>(),
            src.first_backup_id,
            src.second_backup_id
        );
    }
    for (&(lba, n), want) in outcome.extents.iter().zip(&outcome.extent_hashes) {
        let mut data = c
            .get_block_data(pb::GetBlockDataRequest {
                backup_id: src.second_backup_id.clone(),
                offset: lba * bs,
                length: n * bs,
            })
            .await?
            .into_inner();
        let mut hash = blake3::Hasher::new();
        while let Some(piece) = data.message().await? {
            hash.update(&piece.data);
        }
        if hash.finalize().as_bytes() != want {
            anyhow::bail!(
                "--verify: the bytes at LBA {lba} ({n} blocks) differ from backup {}",
                src.second_backup_id
            );
        }
    }
    Ok(format!(
        "{} → {} ({} extents)",
        src.first_backup_id,
        src.second_backup_id,
        outcome.extents.len()
    ))
}
