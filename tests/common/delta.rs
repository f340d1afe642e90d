//! Helpers for the delta-volume tests: a sparse volume model that keeps only
//! written blocks (volumes here are larger than 1 GiB, so the 1 GiB GET LBA STATUS
//! scans have more than one), expected deltas coarsened to a change block size,
//! and the iSCSI clients that check a delta volume: our Rust initiator (GET LBA
//! STATUS(32) through the Extended-CDB AHS, READ, WRITE), and libiscsi through
//! `qemu-img` (GET LBA STATUS(16) for `map`, READs for `convert`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::Value;
use target_emulator::ChapCredentials;
use target_emulator::initiator::{CommandResult, Initiator, LoginOptions, cdb};
use target_emulator::scsi::lba_status::decode;

use super::BLOCK;

pub const INITIATOR: &str = "iqn.2026-11.io.blockdelta:test-initiator";

/// A volume file and its content as a map of non-zero 4 KiB blocks.
pub struct SparseModel {
    pub path: PathBuf,
    pub size: u64,
    pub blocks: BTreeMap<u64, Vec<u8>>,
    pub rng: StdRng,
}

impl SparseModel {
    /// A sparse all-zero file of `size` bytes at `path`.
    pub fn create(path: &Path, size: u64, seed: u64) -> SparseModel {
        let f = std::fs::File::create(path).expect("create volume");
        f.set_len(size).expect("size volume");
        SparseModel {
            path: path.to_path_buf(),
            size,
            blocks: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn tracking_blocks(&self) -> u64 {
        self.size / BLOCK as u64
    }

    /// Writes `bytes` (whole blocks) at tracking block `block`, to file and model.
    pub fn write(&mut self, block: u64, bytes: &[u8]) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .expect("open volume");
        f.write_all_at(bytes, block * BLOCK as u64)
            .expect("write volume");
        for (i, chunk) in bytes.chunks(BLOCK).enumerate() {
            let b = block + i as u64;
            if chunk.iter().all(|&x| x == 0) {
                self.blocks.remove(&b);
            } else {
                self.blocks.insert(b, chunk.to_vec());
            }
        }
    }

    /// `count` blocks of random bytes, or of text-like bytes (compressible).
    pub fn content(&mut self, count: usize, text: bool) -> Vec<u8> {
        let mut buf = vec![0u8; count * BLOCK];
        if text {
            const WORDS: &[&[u8]] = &[b"delta ", b"block ", b"backup ", b"chain\n", b"lba "];
            let mut at = 0;
            while at < buf.len() {
                let w = WORDS[self.rng.random_range(0..WORDS.len())];
                let n = w.len().min(buf.len() - at);
                buf[at..at + n].copy_from_slice(&w[..n]);
                at += n;
            }
        } else {
            self.rng.fill_bytes(&mut buf);
        }
        buf
    }

    pub fn fill(&mut self, block: u64, count: usize, text: bool) {
        let bytes = self.content(count, text);
        self.write(block, &bytes);
    }

    pub fn zero(&mut self, block: u64, count: usize) {
        self.write(block, &vec![0u8; count * BLOCK]);
    }

    /// Writes a block's own bytes back: not a change.
    pub fn rewrite_same(&mut self, block: u64) {
        let bytes = self
            .blocks
            .get(&block)
            .cloned()
            .unwrap_or_else(|| vec![0; BLOCK]);
        self.write(block, &bytes);
    }

    pub fn random_block(&mut self) -> u64 {
        self.rng.random_range(0..self.tracking_blocks())
    }

    /// The bytes of tracking block `b` (zeros when not written).
    pub fn block(&self, b: u64) -> Vec<u8> {
        self.blocks
            .get(&b)
            .cloned()
            .unwrap_or_else(|| vec![0; BLOCK])
    }
}

/// Tracking blocks whose content differs between two generations.
pub fn diff(old: &BTreeMap<u64, Vec<u8>>, new: &BTreeMap<u64, Vec<u8>>) -> BTreeSet<u64> {
    let keys: BTreeSet<u64> = old.keys().chain(new.keys()).copied().collect();
    keys.into_iter()
        .filter(|k| old.get(k) != new.get(k))
        .collect()
}

/// Changed tracking blocks coarsened to change blocks of `cbs` bytes, as maximal
/// byte extents (offset, length), the last clipped to the volume.
pub fn coarse_extents(changed: &BTreeSet<u64>, cbs: u64, size: u64) -> Vec<(u64, u64)> {
    let factor = cbs / BLOCK as u64;
    let coarse: BTreeSet<u64> = changed.iter().map(|t| t / factor).collect();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for c in coarse {
        let (off, end) = (c * cbs, ((c + 1) * cbs).min(size));
        match out.last_mut() {
            Some((o, l)) if *o + *l == off => *l = end - *o,
            _ => out.push((off, end - off)),
        }
    }
    out
}

/// A command with a time limit; (success, stdout, stderr).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Data extents `qemu-img map` reports for an iSCSI URL (libiscsi's GET LBA
/// STATUS(16) underneath), merged, as (offset, length).
pub fn qemu_img_map(url: &str) -> Vec<(u64, u64)> {
    let (ok, out, err) = run_bounded(
        Command::new("qemu-img").args(["map", "--output=json", url]),
        Duration::from_secs(120),
    );
    assert!(ok, "qemu-img map {url}: {err}");
    let v: Value = serde_json::from_str(&out).expect("qemu-img map json");
    let mut extents: Vec<(u64, u64)> = Vec::new();
    for e in v.as_array().expect("array") {
        if e["data"].as_bool() != Some(true) {
            continue;
        }
        let (off, len) = (e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap());
        match extents.last_mut() {
            Some((o, l)) if *o + *l == off => *l += len,
            _ => extents.push((off, len)),
        }
    }
    extents
}

/// What a login needs: portal, target name, CHAP if any.
#[derive(Clone, Debug)]
pub struct Attached {
    pub portal: SocketAddr,
    pub target: String,
    pub block_size: u64,
    pub chap: Option<ChapCredentials>,
}

impl Attached {
    pub fn from_json(a: &Value) -> Attached {
        let user = a["chap_username"].as_str().unwrap_or_default();
        Attached {
            portal: a["portal"].as_str().unwrap().parse().expect("portal"),
            target: a["target_iqn"].as_str().unwrap().to_string(),
            block_size: a["block_size"].as_u64().unwrap(),
            chap: (!user.is_empty()).then(|| ChapCredentials {
                user: user.to_string(),
                secret: a["chap_secret"].as_str().unwrap().to_string(),
            }),
        }
    }

    pub fn url(&self) -> String {
        format!("iscsi://{}/{}/0", self.portal, self.target)
    }

    pub async fn login(&self) -> Initiator {
        self.try_login().await.expect("login")
    }

    pub async fn try_login(&self) -> Result<Initiator, target_emulator::initiator::InitiatorError> {
        Initiator::connect(
            self.portal,
            &LoginOptions {
                initiator_name: INITIATOR.into(),
                target_name: Some(self.target.clone()),
                chap: self.chap.clone(),
                header_digest: false,
                data_digest: false,
            },
        )
        .await
    }
}

/// Scans the whole LUN with GET LBA STATUS(32), report type 0, in scans of
/// `scan_bytes`, as Oracle's workflow does; returns (lba, blocks, status)
/// descriptors merged across scans, and checks they tile the LUN.
pub async fn scan32(
    i: &mut Initiator,
    block_size: u64,
    size: u64,
    scan_bytes: u64,
) -> Vec<(u64, u64, u8)> {
    let total = size / block_size;
    let scan_blocks = (scan_bytes / block_size) as u32;
    let mut out: Vec<(u64, u64, u8)> = Vec::new();
    let mut lba = 0;
    let mut commands = 0;
    while lba < total {
        commands += 1;
        assert!(commands < 100_000, "scan does not advance");
        let alloc = 8 + 16 * 4096;
        let r = i
            .command(
                &cdb::get_lba_status_32(lba, scan_blocks, 0, 0, alloc),
                &[],
                alloc,
            )
            .await
            .expect("GET LBA STATUS(32)");
        assert_eq!(
            r.status,
            0,
            "GET LBA STATUS(32) at {lba}: {:?}",
            r.sense_code()
        );
        let (condition, rtp, descriptors) = decode(&r.data).expect("parameter data");
        assert!(rtp, "report type honoured");
        assert!(!descriptors.is_empty(), "no descriptors at {lba}");
        assert_eq!(
            descriptors[0].lba, lba,
            "first descriptor starts at the starting LBA"
        );
        let scan_end = (lba + scan_blocks as u64).min(total);
        for d in &descriptors {
            assert!(
                d.lba + d.blocks <= scan_end,
                "descriptor past the scan: {d:?}"
            );
            match out.last_mut() {
                Some((l, n, s)) if *s == d.status && *l + *n == d.lba => *n += d.blocks,
                Some((l, n, _)) => {
                    assert_eq!(*l + *n, d.lba, "descriptors are contiguous");
                    out.push((d.lba, d.blocks, d.status));
                }
                None => out.push((d.lba, d.blocks, d.status)),
            }
        }
        let last = descriptors.last().expect("descriptor");
        let next = last.lba + last.blocks;
        match condition {
            1 => assert!(next < scan_end),
            2 => assert_eq!(next, scan_end),
            3 => assert_eq!(next, total),
            other => panic!("completion condition {other}"),
        }
        lba = next;
    }
    out
}

/// Mapped extents of a scan, in bytes.
pub fn mapped_bytes(descriptors: &[(u64, u64, u8)], block_size: u64) -> Vec<(u64, u64)> {
    descriptors
        .iter()
        .filter(|d| d.2 == 0 || d.2 == 3)
        .map(|&(lba, n, _)| (lba * block_size, n * block_size))
        .collect()
}

/// READ(16) of `blocks` logical blocks at `lba`.
pub async fn read16(i: &mut Initiator, lba: u64, blocks: u32, block_size: u64) -> CommandResult {
    i.command(&cdb::read_16(lba, blocks), &[], blocks * block_size as u32)
        .await
        .expect("READ(16)")
}

/// WRITE(10) of one logical block at `lba`.
pub async fn write10(i: &mut Initiator, lba: u32, block_size: u64) -> CommandResult {
    i.command(&cdb::write_10(lba, 1), &vec![0x5a; block_size as usize], 0)
        .await
        .expect("WRITE(10)")
}
