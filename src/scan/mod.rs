//! `blockdelta scan DEVICE|iscsi://HOST:PORT/IQN/LUN`: Oracle's step 3 as one command
//! (DESIGN.md §13). The medium is walked with GET LBA STATUS(32) in scans of at most
//! 1 GiB ([`walk`]); the changed extents are listed, or read (READ(16)) into a sparse
//! image at their offsets, or into a checksummed stream ([`stream`]). The commands go
//! through SG_IO to an attached disk ([`sgio`]) or through the built-in initiator to an
//! iSCSI URL, with CHAP when given ([`iscsi`]); both are a [`medium::Medium`].

mod iscsi;
mod medium;
mod sgio;
pub mod stream;
pub mod walk;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use target_emulator::ChapCredentials;
use target_emulator::initiator::{cdb, replies};
use target_emulator::scsi::lba_status;

pub use iscsi::{INITIATOR_NAME, IscsiTarget};
use medium::Medium;
use walk::Walk;

/// Descriptors one GET LBA STATUS answer may carry (the allocation length follows).
const DESCRIPTORS_PER_SCAN: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{0}: expected a block or sg device (/dev/…) or iscsi://HOST:PORT/IQN/LUN")]
    BadTarget(String),
    #[error("iSCSI: {0}")]
    Iscsi(String),
    #[error(
        "{command} failed: status {status:#04x}, sense key {key:#x} ASC/ASCQ {asc:#04x}/{ascq:#04x}"
    )]
    Check {
        command: &'static str,
        status: u8,
        key: u8,
        asc: u8,
        ascq: u8,
    },
    #[error("{0}")]
    Answer(String),
    #[error(transparent)]
    Walk(#[from] walk::WalkError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What is scanned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanTarget {
    Iscsi(IscsiTarget),
    /// A block or sg device, through SG_IO.
    Device(PathBuf),
}

impl ScanTarget {
    pub fn parse(text: &str) -> Result<ScanTarget, ScanError> {
        if text.starts_with("iscsi://") {
            return Ok(ScanTarget::Iscsi(IscsiTarget::parse(text)?));
        }
        if text.starts_with('/') {
            return Ok(ScanTarget::Device(PathBuf::from(text)));
        }
        Err(ScanError::BadTarget(text.to_string()))
    }
}

/// How an iSCSI target is logged in to.
pub struct Login {
    pub initiator_name: String,
    pub chap: Option<ChapCredentials>,
}

/// Where the changed extents' bytes go.
pub enum Output<'a> {
    /// Nowhere: only the extents are listed.
    List,
    /// Read and hashed (`ScanOutcome::extent_hashes`), then dropped: for `--verify`.
    Discard,
    /// A sparse file of the medium's size, each extent at its offset.
    Image(&'a Path),
    /// The framed stream of [`stream`].
    Stream(&'a mut dyn Write),
}

/// What a scan found.
#[derive(Clone, Debug, Default)]
pub struct ScanOutcome {
    pub block_size: u32,
    pub blocks: u64,
    /// (lba, blocks), ascending and maximal.
    pub extents: Vec<(u64, u64)>,
    pub scans: u64,
    /// Bytes read from the medium (0 when only listing).
    pub bytes_read: u64,
    /// blake3 of each extent's bytes, when they were read.
    pub extent_hashes: Vec<[u8; 32]>,
}

/// Scans `target`; `progress` hears (bytes done, bytes) of the walk, then of the reads.
pub async fn scan(
    target: &ScanTarget,
    login: Login,
    output: Output<'_>,
    progress: &dyn Fn(u64, u64),
) -> Result<ScanOutcome, ScanError> {
    match target {
        ScanTarget::Iscsi(t) => {
            let mut m = iscsi::IscsiMedium::login(t, &login.initiator_name, login.chap).await?;
            let outcome = scan_medium(&mut m, output, progress).await;
            m.close().await;
            outcome
        }
        ScanTarget::Device(path) => {
            if login.chap.is_some() {
                return Err(ScanError::BadTarget(format!(
                    "{}: CHAP is for iscsi:// targets; the device is logged in already",
                    path.display()
                )));
            }
            let mut m = sgio::SgDevice::open(path)?;
            scan_medium(&mut m, output, progress).await
        }
    }
}

async fn scan_medium<M: Medium>(
    m: &mut M,
    output: Output<'_>,
    progress: &dyn Fn(u64, u64),
) -> Result<ScanOutcome, ScanError> {
    let inquiry = m.command("INQUIRY", &cdb::inquiry(96), 96).await?;
    match replies::standard_inquiry(&inquiry) {
        Some(i) if i.qualifier == 0 && i.device_type == 0 => {}
        Some(i) => {
            return Err(ScanError::Answer(format!(
                "not a block device: INQUIRY says peripheral qualifier {} type {:#04x} ({} {})",
                i.qualifier, i.device_type, i.vendor, i.product
            )));
        }
        None => return Err(ScanError::Answer("INQUIRY answered short".into())),
    }
    let cap = m
        .command("READ CAPACITY(16)", &cdb::read_capacity_16(), 32)
        .await?;
    let cap = replies::capacity_16(&cap).ok_or_else(|| {
        ScanError::Answer("READ CAPACITY(16) answered short or with 0-byte blocks".into())
    })?;
    let (blocks, block_size) = (cap.blocks(), cap.block_len);
    let bs = u64::from(block_size);
    let mut walk = Walk::new(blocks, block_size);
    let allocation = 8 + 16 * DESCRIPTORS_PER_SCAN;
    while let Some(scan) = walk.next_scan() {
        let c = cdb::get_lba_status_32(scan.lba, scan.blocks, 0, 0, allocation);
        let data = m.command("GET LBA STATUS(32)", &c, allocation).await?;
        let (completion, _rtp, extents) = lba_status::decode(&data)
            .ok_or_else(|| ScanError::Answer("GET LBA STATUS answered short".into()))?;
        walk.take(scan, completion, &extents)?;
        let walked = walk.next_scan().map_or(blocks, |s| s.lba);
        progress(walked * bs, blocks * bs);
    }
    let mut outcome = ScanOutcome {
        block_size,
        blocks,
        extents: walk.changed().to_vec(),
        scans: walk.scans(),
        ..Default::default()
    };
    let mut sink = match output {
        Output::List => return Ok(outcome),
        Output::Discard => Sink::Discard,
        Output::Image(path) => Sink::image(path, blocks * bs)?,
        Output::Stream(w) => Sink::stream(w, block_size, blocks * bs)?,
    };
    let changed: u64 = outcome.extents.iter().map(|e| e.1 * bs).sum();
    let per_read = (m.max_read_bytes() / bs).max(1);
    for &(lba, n) in &outcome.extents.clone() {
        sink.begin(lba * bs, n * bs)?;
        let mut hash = blake3::Hasher::new();
        let mut at = lba;
        while at < lba + n {
            let count = per_read.min(lba + n - at);
            let want = (count * bs) as u32;
            let data = m
                .command("READ(16)", &cdb::read_16(at, count as u32), want)
                .await?;
            if data.len() as u32 != want {
                return Err(ScanError::Answer(format!(
                    "READ(16) at LBA {at} answered {} of {want} bytes",
                    data.len()
                )));
            }
            hash.update(&data);
            sink.write(at * bs, &data)?;
            outcome.bytes_read += data.len() as u64;
            progress(outcome.bytes_read, changed);
            at += count;
        }
        let hash = *hash.finalize().as_bytes();
        sink.end_extent(lba * bs, n * bs, hash)?;
        outcome.extent_hashes.push(hash);
    }
    sink.finish()?;
    Ok(outcome)
}

/// Where read bytes go.
enum Sink<'a> {
    Discard,
    Image {
        path: &'a Path,
        file: std::fs::File,
    },
    Stream {
        out: &'a mut dyn Write,
        header: Vec<u8>,
        sums: Vec<stream::ExtentSum>,
    },
}

impl<'a> Sink<'a> {
    fn image(path: &'a Path, len: u64) -> Result<Sink<'a>, ScanError> {
        let file = std::fs::File::create(path).map_err(|e| image_io(path, e))?;
        file.set_len(len).map_err(|e| image_io(path, e))?;
        Ok(Sink::Image { path, file })
    }

    fn stream(out: &'a mut dyn Write, block_size: u32, len: u64) -> Result<Sink<'a>, ScanError> {
        let header = stream::header(block_size, len);
        out.write_all(&header).map_err(stdout_io)?;
        Ok(Sink::Stream {
            out,
            header,
            sums: Vec::new(),
        })
    }

    fn begin(&mut self, offset: u64, length: u64) -> Result<(), ScanError> {
        if let Sink::Stream { out, .. } = self {
            out.write_all(&stream::extent_head(offset, length))
                .map_err(stdout_io)?;
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), ScanError> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Image { path, file } => file
                .write_all_at(data, offset)
                .map_err(|e| image_io(path, e)),
            Sink::Stream { out, .. } => out.write_all(data).map_err(stdout_io),
        }
    }

    fn end_extent(&mut self, offset: u64, length: u64, hash: [u8; 32]) -> Result<(), ScanError> {
        if let Sink::Stream { out, sums, .. } = self {
            out.write_all(&hash).map_err(stdout_io)?;
            sums.push((offset, length, hash));
        }
        Ok(())
    }

    fn finish(self) -> Result<(), ScanError> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Image { path, file } => file.sync_all().map_err(|e| image_io(path, e)),
            Sink::Stream { out, header, sums } => out
                .write_all(&stream::end(&header, &sums))
                .and_then(|()| out.flush())
                .map_err(stdout_io),
        }
    }
}

fn image_io(path: &Path, source: std::io::Error) -> ScanError {
    ScanError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn stdout_io(source: std::io::Error) -> ScanError {
    ScanError::Io {
        path: "standard output".into(),
        source,
    }
}
