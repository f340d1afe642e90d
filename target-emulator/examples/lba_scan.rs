//! Scans a whole LUN with GET LBA STATUS the way Oracle's delta workflow does (scans of
//! at most `--scan-bytes`, report type 0, as many descriptors as `--alloc` holds) and
//! prints one line: extents, mapped extents, mapped bytes, commands and seconds. The
//! 16-byte form has no scan length: each command asks from where the last one stopped.
//! With `--read`, it then reads every mapped extent (READ(16), at most 1 MiB each) and
//! prints a second line with bytes and seconds; `--ranges FILE` reads the byte ranges of
//! a JSON list `[[offset, length], ...]` instead of scanning (the same ranges from
//! another LUN).
//!
//!   cargo run --release -p target-emulator --example lba_scan -- \
//!       --portal 127.0.0.1:3260 --target IQN [--cdb 32] [--chap-user U --chap-secret S]
//!
//! Used by bench/delta_bench.sh against blockdelta's target and tgt.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use target_emulator::ChapCredentials;
use target_emulator::initiator::{Initiator, LoginOptions, cdb};
use target_emulator::scsi::lba_status::decode;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    portal: SocketAddr,
    #[arg(long)]
    target: String,
    /// LUN number (tgt numbers its first disk 1).
    #[arg(long, default_value_t = 0)]
    lun: u8,
    /// 16 or 32.
    #[arg(long, default_value_t = 32)]
    cdb: u8,
    #[arg(long, default_value_t = 1 << 30)]
    scan_bytes: u64,
    /// Allocation length per command.
    #[arg(long, default_value_t = 8 + 16 * 4096)]
    alloc: u32,
    /// Read every mapped extent after the scan.
    #[arg(long)]
    read: bool,
    /// Read these byte ranges (JSON [[offset, length], ...]) instead of scanning.
    #[arg(long)]
    ranges: Option<std::path::PathBuf>,
    /// Write the mapped byte ranges the scan found to this file (JSON).
    #[arg(long)]
    save_ranges: Option<std::path::PathBuf>,
    #[arg(long, requires = "chap_secret")]
    chap_user: Option<String>,
    #[arg(long, requires = "chap_user")]
    chap_secret: Option<String>,
}

fn gls(args: &Args, lba: u64, scan_blocks: u32) -> Vec<u8> {
    if args.cdb == 16 {
        cdb::get_lba_status_16(lba, args.alloc, 0).to_vec()
    } else {
        cdb::get_lba_status_32(lba, scan_blocks, 0, 0, args.alloc).to_vec()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut i = Initiator::connect(
        args.portal,
        &LoginOptions {
            initiator_name: "iqn.2026-11.io.blockdelta:lba-scan".into(),
            target_name: Some(args.target.clone()),
            chap: args
                .chap_user
                .clone()
                .zip(args.chap_secret.clone())
                .map(|(user, secret)| ChapCredentials { user, secret }),
            header_digest: false,
            data_digest: false,
        },
    )
    .await
    .context("login")?;
    i.use_lun(args.lun);
    // The first command after login may meet the unit's power-on UNIT ATTENTION.
    let mut rc = i
        .command(
            &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
            &[],
            32,
        )
        .await?;
    for _ in 0..3 {
        if rc.sense_code().map(|s| s.0) != Some(6) {
            break;
        }
        rc = i
            .command(
                &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
                &[],
                32,
            )
            .await?;
    }
    if rc.status != 0 || rc.data.len() < 12 {
        bail!("READ CAPACITY(16) failed: {:?}", rc.sense_code());
    }
    let mut last = [0u8; 8];
    last.copy_from_slice(&rc.data[0..8]);
    let blocks = u64::from_be_bytes(last) + 1;
    let block_size = u32::from_be_bytes([rc.data[8], rc.data[9], rc.data[10], rc.data[11]]) as u64;
    let scan_blocks = (args.scan_bytes / block_size).min(u32::MAX as u64) as u32;

    if let Some(file) = &args.ranges {
        let text = std::fs::read_to_string(file).context("ranges file")?;
        let ranges = parse_ranges(&text).context("ranges: a JSON list of [offset, length]")?;
        read_ranges(&mut i, &ranges, block_size).await?;
        i.logout().await?;
        return Ok(());
    }

    let start = Instant::now();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let (mut lba, mut commands, mut extents, mut mapped, mut mapped_bytes) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut previous: Option<(u64, u8)> = None;
    while lba < blocks {
        commands += 1;
        let r = i
            .command(&gls(&args, lba, scan_blocks), &[], args.alloc)
            .await?;
        if r.status != 0 {
            bail!("GET LBA STATUS at {lba}: {:?}", r.sense_code());
        }
        let (_, _, descriptors) = decode(&r.data).context("parameter data")?;
        let Some(end) = descriptors.last().map(|d| d.lba + d.blocks) else {
            bail!("no descriptors at {lba}");
        };
        for d in descriptors {
            // A descriptor continuing the previous one (split by a scan) is one extent.
            if previous != Some((d.lba, d.status)) {
                extents += 1;
                if d.status == 0 || d.status == 3 {
                    mapped += 1;
                }
            }
            if d.status == 0 || d.status == 3 {
                mapped_bytes += d.blocks * block_size;
                let (off, len) = (d.lba * block_size, d.blocks * block_size);
                match ranges.last_mut() {
                    Some((o, l)) if *o + *l == off => *l += len,
                    _ => ranges.push((off, len)),
                }
            }
            previous = Some((d.lba + d.blocks, d.status));
        }
        lba = end;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "extents {extents} mapped {mapped} mapped_bytes {mapped_bytes} commands {commands} seconds {seconds:.4}"
    );
    if let Some(file) = &args.save_ranges {
        let list: Vec<String> = ranges.iter().map(|(o, l)| format!("[{o},{l}]")).collect();
        std::fs::write(file, format!("[{}]\n", list.join(","))).context("save ranges")?;
    }
    if args.read {
        read_ranges(&mut i, &ranges, block_size).await?;
    }
    i.logout().await?;
    Ok(())
}

/// `[[offset, length], ...]` without a JSON dependency: the numbers, in pairs.
fn parse_ranges(text: &str) -> Option<Vec<(u64, u64)>> {
    let numbers: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().ok())
        .collect::<Option<_>>()?;
    numbers
        .len()
        .is_multiple_of(2)
        .then(|| numbers.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// Reads the ranges front to back in READ(16)s of at most 1 MiB; prints bytes, seconds, MB/s.
async fn read_ranges(
    i: &mut Initiator,
    ranges: &[(u64, u64)],
    block_size: u64,
) -> anyhow::Result<()> {
    const MAX: u64 = 1 << 20;
    let start = Instant::now();
    let mut bytes = 0u64;
    for &(off, len) in ranges {
        let mut at = off;
        while at < off + len {
            let n = (off + len - at).min(MAX);
            let c = cdb::read_16(at / block_size, (n / block_size) as u32);
            let r = i.command(&c, &[], n as u32).await?;
            if r.status != 0 || r.data.len() as u64 != n {
                bail!("READ(16) at byte {at}: {:?}", r.sense_code());
            }
            bytes += n;
            at += n;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "read_bytes {bytes} read_seconds {seconds:.4} read_mb_s {:.1}",
        bytes as f64 / seconds / 1e6
    );
    Ok(())
}
