//! Catalog records → wire messages, with live progress for running jobs.

use roaring::RoaringTreemap;

use super::pb;
use crate::catalog::{BackupRecord, VolumeRecord, status};
use crate::engine::Service;
use crate::repo::TRACKING_BLOCK_SIZE;

pub fn volume(svc: &Service, v: VolumeRecord) -> pb::Volume {
    let (done, total) = svc
        .volume_progress(&v.id)
        .unwrap_or(if v.status == status::AVAILABLE {
            (v.size, v.size)
        } else {
            (0, 0)
        });
    pb::Volume {
        id: v.id,
        name: v.name,
        kind: v.kind,
        path: v.path,
        size: v.size,
        status: v.status,
        created_at: v.created_at,
        error: v.error,
        progress_done: done,
        progress_total: total,
    }
}

pub fn backup(svc: &Service, b: BackupRecord) -> pb::Backup {
    let (done, total) = svc
        .backup_progress(&b.id)
        .unwrap_or(match b.status.as_str() {
            status::AVAILABLE | status::RESTORING => (b.size, b.size),
            _ => (0, b.size),
        });
    pb::Backup {
        id: b.id,
        volume_id: b.volume_id,
        name: b.name,
        kind: b.kind,
        parent_id: b.parent_id.unwrap_or_default(),
        status: b.status,
        size: b.size,
        compression: b.compression,
        progress_done: done,
        progress_total: total,
        changed_blocks: b.changed_blocks,
        allocated_blocks: b.allocated_blocks,
        stored_bytes: b.stored_bytes,
        created_at: b.created_at,
        completed_at: b.completed_at,
        error: b.error,
        content_hash: b.content_hash,
        chain_id: b.chain_id,
    }
}

/// A bitmap as maximal ascending runs of consecutive blocks.
pub fn runs(id: &str, size: u64, bitmap: &RoaringTreemap) -> pb::BlockRuns {
    let mut out: Vec<pb::BlockRun> = Vec::new();
    for b in bitmap.iter() {
        match out.last_mut() {
            Some(r) if r.start + r.count == b => r.count += 1,
            _ => out.push(pb::BlockRun { start: b, count: 1 }),
        }
    }
    pb::BlockRuns {
        id: id.to_string(),
        tracking_block_size: TRACKING_BLOCK_SIZE,
        total_blocks: size / TRACKING_BLOCK_SIZE,
        runs: out,
    }
}
