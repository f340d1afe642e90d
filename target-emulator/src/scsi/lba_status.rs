//! GET LBA STATUS(16) and (32) (SBC-4 §5.8, §5.9): walk the LUN's provisioning runs from the
//! starting LBA and describe them as maximal, ascending extents.
//!
//! Contract (DESIGN.md §7, research/scsi-facts.md §2–3): the first descriptor starts at the
//! starting LBA (report type 0); completion condition 1 when the allocation length cut the list,
//! 2 when the scan length did, 3 at the end of the medium; report types 0–3 honoured with RTP=1;
//! mapped extents carry provisioning status 0 under report type 0 and 3 under types 1 and 2,
//! deallocated ones 1. PARAMETER DATA LENGTH counts only descriptors actually returned.

use super::{allocation::truncate, cdb::GetLbaStatus, sense::Sense};
use crate::lun::{Lun, Provisioning};

const HEADER_LEN: usize = 8;
const DESCRIPTOR_LEN: usize = 16;

/// Upper bound on provisioning queries per command, so a LUN that reports tiny runs cannot make
/// one command spin; a scan cut short this way reports completion condition 0.
const MAX_RUNS_PER_COMMAND: usize = 1 << 20;

/// Upper bound on descriptors per command (16 MiB of parameter data), whatever the allocation
/// length: one run longer than 2^32 blocks splits into many descriptors without further
/// provisioning queries, so [`MAX_RUNS_PER_COMMAND`] alone does not bound them. A list cut
/// short this way reports completion condition 0 too.
const MAX_DESCRIPTORS_PER_COMMAND: usize = 1 << 20;

/// Completion conditions (SBC-4 §5.9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completion {
    NoIndication = 0,
    AllocationLength = 1,
    ScanLength = 2,
    EndOfMedium = 3,
}

/// One LBA status descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub lba: u64,
    pub blocks: u64,
    pub status: u8,
}

pub fn get_lba_status(lun: &dyn Lun, req: &GetLbaStatus) -> Result<Vec<u8>, Sense> {
    let capacity = lun.block_count();
    if req.lba >= capacity {
        return Err(Sense::lba_out_of_range());
    }
    let (report_type_byte, element_byte) = if req.long_form { (10, 24) } else { (14, 0) };
    if req.long_form && req.element_id != 0 {
        // We have no physical elements: any element identifier names something that is not there.
        return Err(Sense::invalid_field_in_cdb(element_byte));
    }
    let filter = match req.report_type {
        0 => Filter::All,
        1 => Filter::NonZeroStatus,
        2 => Filter::Mapped,
        3 => Filter::Deallocated,
        // Anchored, and "may return unrecovered errors": we have none of either.
        4 | 0x10 => Filter::Nothing,
        _ => return Err(Sense::invalid_field_in_cdb(report_type_byte)),
    };
    let scan_end = match req.scan_length {
        0 => capacity,
        n => capacity.min(req.lba.saturating_add(n as u64)),
    };
    let room_by_allocation =
        (req.allocation_length as usize).saturating_sub(HEADER_LEN) / DESCRIPTOR_LEN;
    let room = room_by_allocation.min(MAX_DESCRIPTORS_PER_COMMAND);
    let (extents, mut completion) = collect(lun, req.lba, scan_end, capacity, filter, room)?;
    if completion == Completion::AllocationLength && room < room_by_allocation {
        // Our bound cut the list, not the initiator's buffer.
        completion = Completion::NoIndication;
    }
    let mut d = Vec::with_capacity(HEADER_LEN + extents.len() * DESCRIPTOR_LEN);
    d.extend_from_slice(&((4 + extents.len() * DESCRIPTOR_LEN) as u32).to_be_bytes());
    d.extend_from_slice(&[0, 0, 0, (completion as u8) << 1 | 1]);
    for e in &extents {
        d.extend_from_slice(&e.lba.to_be_bytes());
        d.extend_from_slice(&(e.blocks as u32).to_be_bytes());
        d.extend_from_slice(&[e.status, 0, 0, 0]);
    }
    Ok(truncate(d, req.allocation_length as usize))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    All,
    NonZeroStatus,
    Mapped,
    Deallocated,
    Nothing,
}

impl Filter {
    /// The descriptor status for a run, or `None` if this report type leaves it out.
    fn status(self, p: Provisioning) -> Option<u8> {
        match (self, p) {
            (Filter::All, Provisioning::Mapped) => Some(0),
            (Filter::NonZeroStatus | Filter::Mapped, Provisioning::Mapped) => Some(3),
            (
                Filter::All | Filter::NonZeroStatus | Filter::Deallocated,
                Provisioning::Deallocated,
            ) => Some(1),
            _ => None,
        }
    }
}

/// Walks runs in `[start, scan_end)`, merging adjacent runs of equal status and splitting at the
/// 32-bit block-count limit, until `room` descriptors are full.
fn collect(
    lun: &dyn Lun,
    start: u64,
    scan_end: u64,
    capacity: u64,
    filter: Filter,
    room: usize,
) -> Result<(Vec<Extent>, Completion), Sense> {
    let mut out: Vec<Extent> = Vec::new();
    let mut pending: Option<Extent> = None;
    let mut at = start;
    let mut runs = 0;
    let completion = loop {
        if at >= scan_end {
            break if scan_end < capacity {
                Completion::ScanLength
            } else {
                Completion::EndOfMedium
            };
        }
        if runs == MAX_RUNS_PER_COMMAND {
            break Completion::NoIndication;
        }
        runs += 1;
        let (prov, len) = lun
            .provisioning(at)
            .map_err(|e| Sense::from_lun_error(&e, false))?;
        let len = len.clamp(1, scan_end - at);
        match filter.status(prov) {
            Some(status) => match &mut pending {
                Some(p) if p.status == status && p.lba + p.blocks == at => p.blocks += len,
                _ => {
                    if let Some(p) = pending.take()
                        && !flush(&mut out, p, room)
                    {
                        break Completion::AllocationLength;
                    }
                    pending = Some(Extent {
                        lba: at,
                        blocks: len,
                        status,
                    });
                }
            },
            None => {
                if let Some(p) = pending.take()
                    && !flush(&mut out, p, room)
                {
                    break Completion::AllocationLength;
                }
            }
        }
        at += len;
    };
    if let Some(p) = pending
        && !flush(&mut out, p, room)
    {
        return Ok((out, Completion::AllocationLength));
    }
    Ok((out, completion))
}

/// Appends `e`, split into pieces of at most u32::MAX blocks; false if it did not all fit.
fn flush(out: &mut Vec<Extent>, mut e: Extent, room: usize) -> bool {
    while e.blocks > 0 {
        if out.len() == room {
            return false;
        }
        let n = e.blocks.min(u32::MAX as u64);
        out.push(Extent {
            lba: e.lba,
            blocks: n,
            status: e.status,
        });
        e.lba += n;
        e.blocks -= n;
    }
    true
}

/// Decodes GET LBA STATUS parameter data (for tests and the test initiator): the completion
/// condition, RTP and the descriptors.
pub fn decode(data: &[u8]) -> Option<(u8, bool, Vec<Extent>)> {
    if data.len() < HEADER_LEN {
        return None;
    }
    let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let usable = (len + 4).min(data.len());
    let mut v = Vec::new();
    let mut at = HEADER_LEN;
    while at + DESCRIPTOR_LEN <= usable {
        let d = &data[at..at + DESCRIPTOR_LEN];
        let mut lba = [0u8; 8];
        lba.copy_from_slice(&d[0..8]);
        v.push(Extent {
            lba: u64::from_be_bytes(lba),
            blocks: u32::from_be_bytes([d[8], d[9], d[10], d[11]]) as u64,
            status: d[12] & 0x0f,
        });
        at += DESCRIPTOR_LEN;
    }
    Some(((data[7] >> 1) & 7, data[7] & 1 != 0, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lun::LunError;

    /// A LUN whose provisioning is a list of (status, blocks) runs, deliberately fragmented to
    /// check merging. Test double for the provisioning query only; files are tested elsewhere.
    struct Runs(Vec<(Provisioning, u64)>);

    impl Lun for Runs {
        fn block_size(&self) -> u32 {
            512
        }
        fn block_count(&self) -> u64 {
            self.0.iter().map(|r| r.1).sum()
        }
        fn read_only(&self) -> bool {
            true
        }
        fn read(&self, _: u64, buf: &mut [u8]) -> Result<(), LunError> {
            buf.fill(0);
            Ok(())
        }
        fn provisioning(&self, lba: u64) -> Result<(Provisioning, u64), LunError> {
            let mut start = 0;
            for &(p, n) in &self.0 {
                if lba < start + n {
                    return Ok((p, start + n - lba));
                }
                start += n;
            }
            unreachable!("lba past the end")
        }
        fn serial(&self) -> String {
            "runs".into()
        }
    }

    use Provisioning::{Deallocated as D, Mapped as M};

    fn req(lba: u64, alloc: u32, report_type: u8, scan: u32) -> GetLbaStatus {
        GetLbaStatus {
            lba,
            allocation_length: alloc,
            report_type,
            scan_length: scan,
            element_id: 0,
            long_form: true,
        }
    }

    fn ext(lba: u64, blocks: u64, status: u8) -> Extent {
        Extent {
            lba,
            blocks,
            status,
        }
    }

    #[test]
    fn merges_fragmented_runs_and_reaches_end_of_medium() {
        let lun = Runs(vec![(D, 10), (D, 6), (M, 4), (M, 4), (D, 8)]);
        let (cc, rtp, e) = decode(&get_lba_status(&lun, &req(0, 1024, 0, 0)).unwrap()).unwrap();
        assert_eq!((cc, rtp), (3, true));
        assert_eq!(e, vec![ext(0, 16, 1), ext(16, 8, 0), ext(24, 8, 1)]);
    }

    #[test]
    fn first_descriptor_starts_mid_extent() {
        let lun = Runs(vec![(M, 100), (D, 100)]);
        let (_, _, e) = decode(&get_lba_status(&lun, &req(37, 1024, 0, 0)).unwrap()).unwrap();
        assert_eq!(e[0], ext(37, 63, 0));
    }

    #[test]
    fn report_types_filter_and_mark_mapped_as_3() {
        let lun = Runs(vec![(M, 8), (D, 8), (M, 8)]);
        let t1 = decode(&get_lba_status(&lun, &req(0, 1024, 1, 0)).unwrap())
            .unwrap()
            .2;
        assert_eq!(t1, vec![ext(0, 8, 3), ext(8, 8, 1), ext(16, 8, 3)]);
        let t2 = decode(&get_lba_status(&lun, &req(0, 1024, 2, 0)).unwrap())
            .unwrap()
            .2;
        assert_eq!(t2, vec![ext(0, 8, 3), ext(16, 8, 3)]);
        let t3 = decode(&get_lba_status(&lun, &req(0, 1024, 3, 0)).unwrap())
            .unwrap()
            .2;
        assert_eq!(t3, vec![ext(8, 8, 1)]);
    }

    #[test]
    fn allocation_length_cuts_with_condition_1() {
        let lun = Runs(vec![(M, 8), (D, 8), (M, 8)]);
        let d = get_lba_status(&lun, &req(0, 8 + 32, 0, 0)).unwrap();
        let (cc, _, e) = decode(&d).unwrap();
        assert_eq!((cc, e.len()), (1, 2));
        assert_eq!(u32::from_be_bytes([d[0], d[1], d[2], d[3]]), 4 + 32);
    }

    #[test]
    fn scan_length_clips_with_condition_2() {
        let lun = Runs(vec![(M, 8), (D, 100)]);
        let (cc, _, e) = decode(&get_lba_status(&lun, &req(4, 1024, 0, 10)).unwrap()).unwrap();
        assert_eq!(cc, 2);
        assert_eq!(e, vec![ext(4, 4, 0), ext(8, 6, 1)]);
    }

    #[test]
    fn last_lba_and_beyond() {
        let lun = Runs(vec![(M, 8)]);
        let (cc, _, e) = decode(&get_lba_status(&lun, &req(7, 1024, 0, 0)).unwrap()).unwrap();
        assert_eq!((cc, e), (3, vec![ext(7, 1, 0)]));
        assert_eq!(
            get_lba_status(&lun, &req(8, 1024, 0, 0)),
            Err(Sense::lba_out_of_range())
        );
    }

    #[test]
    fn element_id_and_bad_report_type_are_invalid_fields() {
        let lun = Runs(vec![(M, 8)]);
        let mut r = req(0, 1024, 0, 0);
        r.element_id = 1;
        assert_eq!(
            get_lba_status(&lun, &r),
            Err(Sense::invalid_field_in_cdb(24))
        );
        assert_eq!(
            get_lba_status(&lun, &req(0, 1024, 5, 0)),
            Err(Sense::invalid_field_in_cdb(10))
        );
    }

    #[test]
    fn extents_longer_than_u32_blocks_are_split() {
        let lun = Runs(vec![(D, (1u64 << 32) + 5)]);
        let (_, _, e) = decode(&get_lba_status(&lun, &req(0, 1024, 0, 0)).unwrap()).unwrap();
        assert_eq!(
            e,
            vec![ext(0, u32::MAX as u64, 1), ext(u32::MAX as u64, 6, 1)]
        );
    }

    /// Found by the `cdb` fuzz target: on a medium of 2^62 blocks, an allocation length of
    /// 0xffffffff let one long run split into hundreds of millions of descriptors (gigabytes).
    #[test]
    fn descriptors_per_command_are_bounded_with_condition_0() {
        let lun = Runs(vec![(D, 1 << 62)]);
        let d = get_lba_status(&lun, &req(0, u32::MAX, 0, 0)).unwrap();
        let (cc, _, e) = decode(&d).unwrap();
        assert_eq!((cc, e.len()), (0, MAX_DESCRIPTORS_PER_COMMAND));
        assert_eq!(
            e.last().unwrap().lba,
            (e.len() as u64 - 1) * u32::MAX as u64
        );
    }

    #[test]
    fn tiny_allocation_lengths_truncate_without_error() {
        let lun = Runs(vec![(M, 8)]);
        for alloc in 0..24 {
            let d = get_lba_status(&lun, &req(0, alloc, 0, 0)).unwrap();
            assert_eq!(d.len(), (alloc as usize).min(8));
        }
    }
}
