//! Walking a medium with GET LBA STATUS(32) as Oracle documents it (DESIGN.md §13): scans
//! of at most 1 GiB from LBA 0 to the end, each answer's descriptors contiguous from the
//! LBA asked, the next scan from the end of the last descriptor, until the end of the
//! medium. Mapped extents are the changed ones; deallocated ones read as zeros.
//!
//! Pure: the walk says which scan to send next and takes the decoded answer; the transport
//! (the built-in initiator, SG_IO) sends it.

use target_emulator::scsi::lba_status::Extent;

/// Oracle's limit on one scan.
pub const MAX_SCAN_BYTES: u64 = 1 << 30;
/// PROVISIONING STATUS of a mapped (changed) extent.
const MAPPED: u8 = 0;

/// One GET LBA STATUS(32) to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    pub lba: u64,
    /// SCAN LENGTH, in logical blocks.
    pub blocks: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WalkError {
    #[error(
        "the answer for LBA {asked} starts at LBA {got}: descriptors must start at the LBA asked"
    )]
    WrongStart { asked: u64, got: u64 },
    #[error("the answer for LBA {asked} has no descriptor: the scan cannot go on")]
    NoProgress { asked: u64 },
    #[error(
        "descriptor at LBA {at} is not contiguous with the one before (which ended at {expected})"
    )]
    Gap { at: u64, expected: u64 },
    #[error("a descriptor runs past the end of the medium ({end} > {capacity} blocks)")]
    PastEnd { end: u64, capacity: u64 },
}

pub struct Walk {
    capacity: u64,
    scan_blocks: u32,
    next: u64,
    /// Changed extents, (lba, blocks), coalesced across scans.
    changed: Vec<(u64, u64)>,
    scans: u64,
}

impl Walk {
    /// A walk over `capacity` blocks of `block_len` bytes.
    pub fn new(capacity: u64, block_len: u32) -> Walk {
        let per_scan = (MAX_SCAN_BYTES / u64::from(block_len.max(1))).clamp(1, u64::from(u32::MAX));
        Walk {
            capacity,
            scan_blocks: per_scan as u32,
            next: 0,
            changed: Vec::new(),
            scans: 0,
        }
    }

    /// The next scan to send, or `None` once the whole medium is walked.
    pub fn next_scan(&self) -> Option<Scan> {
        (self.next < self.capacity).then(|| Scan {
            lba: self.next,
            blocks: self
                .scan_blocks
                .min((self.capacity - self.next).min(u64::from(u32::MAX)) as u32),
        })
    }

    /// Takes the answer to `scan`: its completion condition and descriptors. Whether it
    /// stopped at the scan length, the allocation length or the end, the walk resumes at
    /// the end of the last descriptor.
    pub fn take(
        &mut self,
        scan: Scan,
        completion: u8,
        extents: &[Extent],
    ) -> Result<(), WalkError> {
        let first = extents
            .first()
            .ok_or(WalkError::NoProgress { asked: scan.lba })?;
        if first.lba != scan.lba {
            return Err(WalkError::WrongStart {
                asked: scan.lba,
                got: first.lba,
            });
        }
        let mut expected = scan.lba;
        for e in extents {
            if e.lba != expected {
                return Err(WalkError::Gap {
                    at: e.lba,
                    expected,
                });
            }
            let end = e.lba + e.blocks;
            if end > self.capacity {
                return Err(WalkError::PastEnd {
                    end,
                    capacity: self.capacity,
                });
            }
            if e.status == MAPPED && e.blocks > 0 {
                match self.changed.last_mut() {
                    Some(last) if last.0 + last.1 == e.lba => last.1 += e.blocks,
                    _ => self.changed.push((e.lba, e.blocks)),
                }
            }
            expected = end;
        }
        if expected == scan.lba {
            return Err(WalkError::NoProgress { asked: scan.lba });
        }
        // The end of the medium ends the walk whatever the descriptors say.
        self.next = if completion == 3 {
            self.capacity
        } else {
            expected
        };
        self.scans += 1;
        Ok(())
    }

    /// The changed extents found, ascending and maximal.
    pub fn changed(&self) -> &[(u64, u64)] {
        &self.changed
    }

    pub fn scans(&self) -> u64 {
        self.scans
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ext(lba: u64, blocks: u64, status: u8) -> Extent {
        Extent {
            lba,
            blocks,
            status,
        }
    }

    /// Answers a scan from a list of (status, blocks) runs, as a target does: contiguous
    /// descriptors from the LBA asked, at most `max` of them and at most the scan length,
    /// with the completion condition that says why it stopped.
    fn answer(runs: &[(u8, u64)], scan: Scan, max: usize) -> (u8, Vec<Extent>) {
        let capacity: u64 = runs.iter().map(|r| r.1).sum();
        let limit = scan.lba + u64::from(scan.blocks);
        let mut out = Vec::new();
        let mut at = 0;
        for &(status, blocks) in runs {
            let (start, end) = (at.max(scan.lba), (at + blocks).min(limit));
            at += blocks;
            if start < end {
                if out.len() == max {
                    return (1, out);
                }
                out.push(ext(start, end - start, status));
            }
        }
        let cc = if limit >= capacity { 3 } else { 2 };
        (cc, out)
    }

    fn walk_all(runs: &[(u8, u64)], block_len: u32, max: usize) -> Walk {
        let capacity = runs.iter().map(|r| r.1).sum();
        let mut w = Walk::new(capacity, block_len);
        let mut steps = 0;
        while let Some(scan) = w.next_scan() {
            let (cc, extents) = answer(runs, scan, max);
            w.take(scan, cc, &extents).unwrap();
            steps += 1;
            assert!(steps < 100_000);
        }
        w
    }

    #[test]
    fn scans_are_at_most_a_gibibyte() {
        let w = Walk::new(10 << 21, 512);
        assert_eq!(
            w.next_scan(),
            Some(Scan {
                lba: 0,
                blocks: 1 << 21
            })
        );
        let w = Walk::new(100, 4096);
        assert_eq!(
            w.next_scan(),
            Some(Scan {
                lba: 0,
                blocks: 100
            })
        );
        // 3 GiB of 512-byte blocks, every 1 GiB scan one descriptor: 3 scans.
        let w = walk_all(&[(1, 3 << 21)], 512, 64);
        assert_eq!(w.scans(), 3);
        assert!(w.changed().is_empty());
    }

    #[test]
    fn bad_answers_are_refused() {
        let mut w = Walk::new(100, 512);
        let scan = w.next_scan().unwrap();
        assert_eq!(
            w.take(scan, 3, &[]),
            Err(WalkError::NoProgress { asked: 0 })
        );
        assert_eq!(
            w.take(scan, 3, &[ext(1, 99, 0)]),
            Err(WalkError::WrongStart { asked: 0, got: 1 })
        );
        assert_eq!(
            w.take(scan, 3, &[ext(0, 10, 0), ext(11, 89, 1)]),
            Err(WalkError::Gap {
                at: 11,
                expected: 10
            })
        );
        assert_eq!(
            w.take(scan, 3, &[ext(0, 101, 0)]),
            Err(WalkError::PastEnd {
                end: 101,
                capacity: 100
            })
        );
        assert_eq!(
            w.take(scan, 2, &[ext(0, 0, 0)]),
            Err(WalkError::NoProgress { asked: 0 })
        );
    }

    proptest! {
        /// Whatever the runs, the answer sizes and the block length, the walk finds
        /// exactly the mapped runs, coalesced.
        #[test]
        fn finds_exactly_the_mapped_runs(
            runs in prop::collection::vec((0u8..3, 1u64..5000), 1..40),
            max in 1usize..8,
            block_len in prop::sample::select(vec![512u32, 4096]),
        ) {
            let w = walk_all(&runs, block_len, max);
            let mut want: Vec<(u64, u64)> = Vec::new();
            let mut at = 0;
            for &(status, blocks) in &runs {
                if status == 0 {
                    match want.last_mut() {
                        Some(last) if last.0 + last.1 == at => last.1 += blocks,
                        _ => want.push((at, blocks)),
                    }
                }
                at += blocks;
            }
            prop_assert_eq!(w.changed(), &want[..]);
        }
    }
}
