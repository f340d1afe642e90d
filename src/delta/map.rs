//! A delta as a set of changed blocks at the change block size, answered from the
//! union of the span's 4 KiB change bitmaps without ever coarsening it into a new
//! bitmap: a change block is changed when any of its tracking blocks is. Queries
//! (is a block changed, how long is the run at a block, the next changed extents)
//! cost a few roaring seeks each, so making a delta is O(bitmap) and answering
//! GET LBA STATUS or a listing page is O(extents returned · log n).
//!
//! The last change block may be partial when the volume size is not a multiple of
//! the change block size; it counts as a whole block, clipped to the volume.

use roaring::RoaringTreemap;

use crate::repo::TRACKING_BLOCK_SIZE;

#[derive(Clone, Debug)]
pub struct DeltaMap {
    /// Changed tracking blocks, none at or past `tracking_blocks`.
    changed: RoaringTreemap,
    tracking_blocks: u64,
    /// Tracking blocks per change block.
    factor: u64,
    volume_size: u64,
}

impl DeltaMap {
    /// The delta of the given change bitmaps (tracking blocks) over a volume of
    /// `volume_size` bytes (a multiple of 4096), in change blocks of `block_size`
    /// bytes (a power of two, at least 4096).
    pub fn union<'a>(
        bitmaps: impl IntoIterator<Item = &'a RoaringTreemap>,
        volume_size: u64,
        block_size: u64,
    ) -> DeltaMap {
        let mut changed = RoaringTreemap::new();
        for b in bitmaps {
            changed |= b;
        }
        DeltaMap::new(changed, volume_size, block_size)
    }

    pub fn new(mut changed: RoaringTreemap, volume_size: u64, block_size: u64) -> DeltaMap {
        debug_assert!(block_size.is_power_of_two() && block_size >= TRACKING_BLOCK_SIZE);
        let tracking_blocks = volume_size / TRACKING_BLOCK_SIZE;
        // A shrunk volume's change bitmap names blocks past its new end.
        changed.remove_range(tracking_blocks..);
        DeltaMap {
            changed,
            tracking_blocks,
            factor: block_size / TRACKING_BLOCK_SIZE,
            volume_size,
        }
    }

    pub fn block_size(&self) -> u64 {
        self.factor * TRACKING_BLOCK_SIZE
    }

    pub fn volume_size(&self) -> u64 {
        self.volume_size
    }

    /// Change blocks in the volume, the partial last one included.
    pub fn total_blocks(&self) -> u64 {
        self.tracking_blocks.div_ceil(self.factor)
    }

    /// The changed 4 KiB tracking blocks.
    pub fn tracking_bitmap(&self) -> &RoaringTreemap {
        &self.changed
    }

    /// The first changed tracking block at or after `from`.
    fn next_changed_tracking(&self, from: u64) -> Option<u64> {
        let mut it = self.changed.iter();
        it.advance_to(from);
        it.next()
    }

    /// The end (exclusive) of the run of changed tracking blocks starting at the
    /// changed block `from`: gallop, then bisect, with range queries.
    fn changed_tracking_run_end(&self, from: u64) -> u64 {
        let limit = self.tracking_blocks - from;
        let all_set = |len: u64| self.changed.contains_range(from..from + len);
        let (mut good, mut bad) = (1u64, None);
        while bad.is_none() && good < limit {
            let next = (good * 2).min(limit);
            if all_set(next) {
                good = next;
            } else {
                bad = Some(next);
            }
        }
        let Some(mut bad) = bad else {
            return from + good;
        };
        while bad - good > 1 {
            let mid = good + (bad - good) / 2;
            if all_set(mid) {
                good = mid;
            } else {
                bad = mid;
            }
        }
        from + good
    }

    /// Whether change block `block` holds a change.
    pub fn is_changed(&self, block: u64) -> bool {
        let first = block.saturating_mul(self.factor);
        self.next_changed_tracking(first)
            .is_some_and(|t| t < first.saturating_add(self.factor))
    }

    /// The maximal run of change blocks starting at `block` that share its state:
    /// (changed, length ≥ 1), never past the last block. `block` must be below
    /// `total_blocks()`.
    pub fn run_at(&self, block: u64) -> (bool, u64) {
        let total = self.total_blocks();
        let f = self.factor;
        if !self.is_changed(block) {
            let next = self
                .next_changed_tracking(block * f)
                .map_or(total, |t| t / f);
            return (false, next.min(total) - block);
        }
        let mut end = block + 1;
        while end < total {
            match self.next_changed_tracking(end * f) {
                Some(t) if t < (end + 1) * f => {
                    // Change block `end` is changed; jump over the whole tracking run.
                    let run_end = self.changed_tracking_run_end(t);
                    end = (run_end - 1) / f + 1;
                }
                _ => break,
            }
        }
        (true, end.min(total) - block)
    }

    /// Up to `max` maximal changed extents (first block, block count) at or after
    /// `start`, and the block to continue from when there may be more.
    pub fn changed_extents(&self, start: u64, max: usize) -> (Vec<(u64, u64)>, Option<u64>) {
        let total = self.total_blocks();
        let mut out = Vec::new();
        let mut at = start;
        while at < total {
            if out.len() == max {
                return (out, Some(at));
            }
            let (changed, len) = self.run_at(at);
            if changed {
                out.push((at, len));
                at += len;
            } else {
                at += len;
            }
        }
        (out, None)
    }

    /// Changed change blocks, counted without materialising them.
    pub fn changed_blocks(&self) -> u64 {
        if self.factor == 1 {
            return self.changed.len();
        }
        let mut count = 0;
        let mut from = 0;
        while let Some(t) = self.next_changed_tracking(from) {
            count += 1;
            from = (t / self.factor + 1) * self.factor;
        }
        count
    }

    /// Bytes in changed blocks, the last block clipped to the volume.
    pub fn changed_bytes(&self) -> u64 {
        let whole = self.changed_blocks() * self.block_size();
        let last = self.total_blocks().saturating_sub(1);
        let overhang = self.total_blocks() * self.block_size() - self.volume_size;
        if self.total_blocks() > 0 && self.is_changed(last) {
            whole - overhang
        } else {
            whole
        }
    }

    /// Byte range [offset, offset + len) of `count` blocks from `block`, clipped
    /// to the volume.
    pub fn byte_range(&self, block: u64, count: u64) -> (u64, u64) {
        let offset = block * self.block_size();
        let end = ((block + count) * self.block_size()).min(self.volume_size);
        (offset, end.saturating_sub(offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious model: one bool per change block.
    fn naive(changed: &[u64], tracking_blocks: u64, factor: u64) -> Vec<bool> {
        let mut v = vec![false; tracking_blocks.div_ceil(factor) as usize];
        for &t in changed {
            if t < tracking_blocks {
                v[(t / factor) as usize] = true;
            }
        }
        v
    }

    fn naive_runs(v: &[bool]) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (i, &c) in v.iter().enumerate() {
            if !c {
                continue;
            }
            match out.last_mut() {
                Some((s, n)) if *s + *n == i as u64 => *n += 1,
                _ => out.push((i as u64, 1)),
            }
        }
        out
    }

    fn map(changed: &[u64], tracking_blocks: u64, factor: u64) -> DeltaMap {
        let bitmap: RoaringTreemap = changed.iter().copied().collect();
        DeltaMap::new(
            bitmap,
            tracking_blocks * TRACKING_BLOCK_SIZE,
            factor * TRACKING_BLOCK_SIZE,
        )
    }

    proptest! {
        #[test]
        fn queries_agree_with_the_naive_model(
            runs in proptest::collection::vec((0u64..3000, 1u64..300), 0..30),
            tracking_blocks in 1u64..3500,
            factor_log in 0u32..9,
            start in 0u64..4000,
            max in 1usize..8,
        ) {
            let factor = 1u64 << factor_log;
            let changed: Vec<u64> = runs.iter().flat_map(|&(s, n)| s..s + n).collect();
            let m = map(&changed, tracking_blocks, factor);
            let model = naive(&changed, tracking_blocks, factor);
            prop_assert_eq!(m.total_blocks(), model.len() as u64);
            for (i, &c) in model.iter().enumerate() {
                prop_assert_eq!(m.is_changed(i as u64), c, "block {}", i);
            }
            // run_at: maximal runs of equal state.
            let mut at = 0u64;
            while at < m.total_blocks() {
                let (c, len) = m.run_at(at);
                prop_assert!(len >= 1);
                let end = (at + len) as usize;
                prop_assert!(end <= model.len());
                prop_assert!(model[at as usize..end].iter().all(|&x| x == c));
                prop_assert!(end == model.len() || model[end] != c);
                at += len;
            }
            let all = naive_runs(&model);
            let (listed, next) = m.changed_extents(0, usize::MAX);
            prop_assert_eq!(&listed, &all);
            prop_assert_eq!(next, None);
            // Paging from `start` in pages of `max` gives the runs from there on,
            // the first clipped to start at `start`.
            let expected: Vec<(u64, u64)> = all
                .iter()
                .filter(|&&(s, n)| s + n > start)
                .map(|&(s, n)| if s < start { (start, s + n - start) } else { (s, n) })
                .collect();
            let mut paged = Vec::new();
            let mut from = Some(start);
            let mut pages = 0;
            while let Some(f) = from {
                let (page, next) = m.changed_extents(f, max);
                prop_assert!(page.len() <= max);
                paged.extend(page);
                from = next;
                pages += 1;
                prop_assert!(pages < 10_000);
            }
            prop_assert_eq!(paged, expected);
            let count = model.iter().filter(|&&c| c).count() as u64;
            prop_assert_eq!(m.changed_blocks(), count);
            let size = tracking_blocks * TRACKING_BLOCK_SIZE;
            let bytes: u64 = all.iter().map(|&(s, n)| m.byte_range(s, n).1).sum();
            prop_assert_eq!(m.changed_bytes(), bytes);
            prop_assert!(bytes <= size);
        }
    }

    #[test]
    fn a_long_run_is_one_extent_at_every_block_size() {
        let changed: Vec<u64> = (100..100_000).collect();
        for factor in [1, 16, 256] {
            let m = map(&changed, 200_000, factor);
            let (extents, _) = m.changed_extents(0, 10);
            assert_eq!(extents.len(), 1, "factor {factor}");
            assert_eq!(extents[0].0, 100 / factor);
        }
    }

    #[test]
    fn blocks_past_the_end_are_dropped() {
        let m = map(&[5, 10, 99], 10, 1);
        assert_eq!(m.changed_blocks(), 1);
        assert_eq!(m.changed_extents(0, 10).0, vec![(5, 1)]);
    }

    #[test]
    fn a_partial_last_block_is_clipped_in_bytes() {
        // 10 tracking blocks in change blocks of 4 (16 KiB): the last holds 2.
        let m = map(&[9], 10, 4);
        assert_eq!(m.total_blocks(), 3);
        assert_eq!(m.changed_extents(0, 10).0, vec![(2, 1)]);
        assert_eq!(m.byte_range(2, 1), (32768, 8192));
        assert_eq!(m.changed_bytes(), 8192);
    }
}
