//! The walk over the built-in initiator: log in, READ CAPACITY(16), GET LBA STATUS(32)
//! scan by scan (its last 16 CDB bytes travel in an Extended-CDB AHS), then READ(16) of
//! each changed extent, in pieces of at most 1 MiB, into the image when one is asked for.

use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;

use target_emulator::ChapCredentials;
use target_emulator::initiator::{CommandResult, Initiator, LoginOptions, cdb};
use target_emulator::scsi::lba_status;

use super::ScanError;
use super::walk::Walk;

/// Descriptors one answer may carry (the allocation length follows).
const DESCRIPTORS_PER_SCAN: u32 = 4096;
const READ_PIECE: u64 = 1 << 20;
/// The initiator name `scan` logs in as unless told another.
pub const INITIATOR_NAME: &str = "iqn.2026-11.io.blockdelta:scan";

/// `iscsi://HOST:PORT/IQN/LUN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IscsiTarget {
    pub portal: SocketAddr,
    pub iqn: String,
    pub lun: u8,
}

impl IscsiTarget {
    pub fn parse(url: &str) -> Result<IscsiTarget, ScanError> {
        let bad = || ScanError::BadTarget(url.to_string());
        let rest = url.strip_prefix("iscsi://").ok_or_else(bad)?;
        let mut parts = rest.splitn(3, '/');
        let portal = parts.next().ok_or_else(bad)?;
        let iqn = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
        let lun = parts.next().unwrap_or("0");
        Ok(IscsiTarget {
            portal: portal.parse().map_err(|_| bad())?,
            iqn: iqn.to_string(),
            lun: lun.parse().map_err(|_| bad())?,
        })
    }
}

/// What a scan found.
#[derive(Clone, Debug, Default)]
pub struct ScanOutcome {
    pub block_size: u32,
    pub blocks: u64,
    /// (lba, blocks), ascending and maximal.
    pub extents: Vec<(u64, u64)>,
    pub scans: u64,
    /// Bytes read into the image (0 without one).
    pub bytes_read: u64,
}

fn checked(command: &'static str, r: CommandResult) -> Result<Vec<u8>, ScanError> {
    if r.status != 0 {
        let (key, asc, ascq) = r.sense_code().unwrap_or_default();
        return Err(ScanError::Check {
            command,
            status: r.status,
            key,
            asc,
            ascq,
        });
    }
    Ok(r.data)
}

fn iscsi(e: impl std::fmt::Display) -> ScanError {
    ScanError::Iscsi(e.to_string())
}

/// Walks `target`'s medium; with `image`, writes each changed extent's bytes at its offset
/// in a sparse file of the medium's size. `progress` hears (bytes walked, bytes).
pub async fn scan_iscsi(
    target: &IscsiTarget,
    initiator_name: &str,
    chap: Option<ChapCredentials>,
    image: Option<&Path>,
    progress: &dyn Fn(u64, u64),
) -> Result<ScanOutcome, ScanError> {
    let opts = LoginOptions {
        initiator_name: initiator_name.into(),
        target_name: Some(target.iqn.clone()),
        chap,
        ..Default::default()
    };
    let mut ini = Initiator::connect(target.portal, &opts)
        .await
        .map_err(iscsi)?;
    ini.use_lun(target.lun);
    let cap = checked(
        "READ CAPACITY(16)",
        ini.command(&cdb::read_capacity_16(), &[], 32)
            .await
            .map_err(iscsi)?,
    )?;
    if cap.len() < 12 {
        return Err(ScanError::Answer("READ CAPACITY(16) answered short".into()));
    }
    let last_lba = u64::from_be_bytes(cap[0..8].try_into().unwrap_or_default());
    let block_size = u32::from_be_bytes(cap[8..12].try_into().unwrap_or_default());
    if block_size == 0 {
        return Err(ScanError::Answer(
            "READ CAPACITY(16) says 0-byte blocks".into(),
        ));
    }
    let blocks = last_lba + 1;
    let mut walk = Walk::new(blocks, block_size);
    let allocation = 8 + 16 * DESCRIPTORS_PER_SCAN;
    while let Some(scan) = walk.next_scan() {
        let c = cdb::get_lba_status_32(scan.lba, scan.blocks, 0, 0, allocation);
        let data = checked(
            "GET LBA STATUS(32)",
            ini.command(&c, &[], allocation).await.map_err(iscsi)?,
        )?;
        let (completion, _rtp, extents) = lba_status::decode(&data)
            .ok_or_else(|| ScanError::Answer("GET LBA STATUS answered short".into()))?;
        walk.take(scan, completion, &extents)?;
        let walked = walk.next_scan().map_or(blocks, |s| s.lba);
        progress(
            walked * u64::from(block_size),
            blocks * u64::from(block_size),
        );
    }
    let mut outcome = ScanOutcome {
        block_size,
        blocks,
        extents: walk.changed().to_vec(),
        scans: walk.scans(),
        bytes_read: 0,
    };
    if let Some(path) = image {
        let io = |source| ScanError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        file.set_len(blocks * u64::from(block_size)).map_err(io)?;
        let per_read = (READ_PIECE / u64::from(block_size)).max(1);
        for &(lba, n) in &outcome.extents {
            let mut at = lba;
            while at < lba + n {
                let count = per_read.min(lba + n - at);
                let want = (count * u64::from(block_size)) as u32;
                let data = checked(
                    "READ(16)",
                    ini.command(&cdb::read_16(at, count as u32), &[], want)
                        .await
                        .map_err(iscsi)?,
                )?;
                if data.len() as u32 != want {
                    return Err(ScanError::Answer(format!(
                        "READ(16) at LBA {at} answered {} of {want} bytes",
                        data.len()
                    )));
                }
                file.write_all_at(&data, at * u64::from(block_size))
                    .map_err(io)?;
                outcome.bytes_read += data.len() as u64;
                at += count;
            }
        }
        file.sync_all().map_err(io)?;
    }
    let _ = ini.logout().await;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let t =
            IscsiTarget::parse("iscsi://127.0.0.1:3260/iqn.2026-11.io.blockdelta:vol-1/0").unwrap();
        assert_eq!(t.portal, "127.0.0.1:3260".parse().unwrap());
        assert_eq!(t.iqn, "iqn.2026-11.io.blockdelta:vol-1");
        assert_eq!(t.lun, 0);
        assert_eq!(
            IscsiTarget::parse("iscsi://127.0.0.1:3260/iqn.x")
                .unwrap()
                .lun,
            0
        );
        for bad in [
            "/dev/sda",
            "iscsi://host/iqn",
            "iscsi://1.2.3.4:3260/",
            "iscsi://1.2.3.4:3260/i/x",
        ] {
            assert!(IscsiTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
