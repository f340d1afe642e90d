//! Merging a chain into a synthetic full: the backup keeps its bytes and its place in
//! the chain, and its index alone says where every block of it is.
//!
//! An incremental stores the exact 4 KiB blocks that changed, so "the volume as of
//! backup B" is already fully described by B's chain: for each allocated block, the
//! newest backup at or before B that changed it, and the extent that holds it. A merge
//! writes that description down as B's own index: every extent points at a frame that
//! exists (or at the still-current part of one, `Extent::skip`), so no volume byte is
//! read and no frame is rewritten. Afterwards B has no parent: the older backups can go,
//! and `gc` reclaims the frames nobody references any more.
//!
//! What stays exact: B's content (same blocks, same fingerprints, same content hash),
//! and the change bitmaps of every backup after B (untouched), so a delta between any
//! two backups from B on is unchanged. B's own change bitmap becomes a full's (its
//! allocated blocks): it has no parent to differ from.

use std::collections::HashSet;

use super::pack::FRAME_HEADER_LEN;
use super::{BackupIndex, ChainReader, Extent, RepoError};
use crate::kinds::BackupKind;

/// What a merge wrote.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The synthetic full's new index.
    pub index: BackupIndex,
    /// Bytes of the frames it references plus its fingerprints and index.
    pub stored_bytes: u64,
}

/// Turns `backup_id` into a synthetic full in the repository: writes its merged
/// fingerprints, then its new index (the commit point; until then the old index,
/// which names the old fingerprints, stands). A backup whose index is a full already
/// (a merge that stopped before its catalog step, say) is left as it is. The caller holds the volume's job, so nothing adds
/// to or reads the chain differently meanwhile, and forgets the reader's caches after.
pub fn merge_into_full(
    reader: &ChainReader,
    backup_id: &str,
    merged_at: &str,
) -> Result<Merged, RepoError> {
    let target = reader.index(backup_id)?;
    if target.parent_id().is_none() {
        return Ok(Merged {
            index: (*target).clone(),
            stored_bytes: target.manifest.stored_bytes,
        });
    }
    let plan = reader.claim_plan(backup_id)?;
    let fingerprints = reader.fingerprints(backup_id)?;
    let mut extents = Vec::new();
    for (idx, own) in &plan.sources {
        for e in &idx.extents {
            current_parts(e, own, &mut extents);
        }
    }
    extents.sort_unstable_by_key(|e| e.first_block);
    let mut manifest = target.manifest.clone();
    manifest.kind = BackupKind::Full;
    manifest.parent_id = None;
    manifest.merged_at = Some(merged_at.to_string());
    manifest.changed_blocks = plan.allocated.len();
    manifest.allocated_blocks = plan.allocated.len();
    let frame_bytes: u64 = extents
        .iter()
        .map(|e| (e.frame.pack, e.frame.offset, e.frame.stored_len))
        .collect::<HashSet<_>>()
        .iter()
        .map(|(_, _, len)| FRAME_HEADER_LEN + *len as u64)
        .sum();
    let fingerprint_bytes = reader
        .repository()
        .write_fingerprints(&manifest, &fingerprints)?;
    manifest.stored_bytes = frame_bytes + fingerprint_bytes;
    let index = BackupIndex {
        manifest,
        change: plan.allocated.clone(),
        allocated: plan.allocated,
        extents,
    };
    let index_bytes = reader.repository().write_index(&index)?;
    Ok(Merged {
        stored_bytes: index.manifest.stored_bytes + index_bytes,
        index,
    })
}

/// The runs of `extent` whose blocks are in `own` (the blocks its backup still
/// supplies), each as an extent into the same frame.
fn current_parts(extent: &Extent, own: &roaring::RoaringTreemap, out: &mut Vec<Extent>) {
    let mut run: Option<(u64, u64)> = None;
    let push = |first: u64, end: u64, out: &mut Vec<Extent>| {
        out.push(Extent {
            first_block: first,
            blocks: (end - first) as u32,
            frame: extent.frame,
            skip: extent.skip + (first - extent.first_block) as u32,
        })
    };
    for b in extent.first_block..extent.end_block() {
        match (own.contains(b), run) {
            (true, Some((first, end))) if end == b => run = Some((first, b + 1)),
            (true, Some((first, end))) => {
                push(first, end, out);
                run = Some((b, b + 1));
            }
            (true, None) => run = Some((b, b + 1)),
            (false, Some((first, end))) => {
                push(first, end, out);
                run = None;
            }
            (false, None) => {}
        }
    }
    if let Some((first, end)) = run {
        push(first, end, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::pack::{FrameLocation, PackId};

    #[test]
    fn only_the_current_runs_of_an_extent_stay_and_point_into_its_frame() {
        let e = Extent {
            first_block: 100,
            blocks: 10,
            frame: FrameLocation {
                pack: PackId([1; 16]),
                offset: 8,
                stored_len: 10,
                hash: [0; 32],
            },
            skip: 2,
        };
        let own: roaring::RoaringTreemap =
            [100, 101, 104, 105, 106, 109, 200].into_iter().collect();
        let mut out = Vec::new();
        current_parts(&e, &own, &mut out);
        let got: Vec<(u64, u32, u32)> = out
            .iter()
            .map(|x| (x.first_block, x.blocks, x.skip))
            .collect();
        assert_eq!(got, vec![(100, 2, 2), (104, 3, 6), (109, 1, 11)]);
        assert!(out.iter().all(|x| x.frame_first_block() == 98));
    }
}
