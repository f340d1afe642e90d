//! INQUIRY: standard data and the VPD pages 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2
//! (SPC-4 §6.6, §7.8; SBC-4 §6.6). Layouts and what libiscsi/QEMU check:
//! research/scsi-facts.md §4.

use super::{allocation::truncate, limits::Limits, sense::Sense};
use crate::lun::Lun;

const VENDOR: &[u8; 8] = b"BLKDELTA";
const PRODUCT: &[u8; 16] = b"target-emulator ";
const REVISION: &[u8; 4] = b"0001";

/// Supported VPD pages, ascending (libiscsi checks the order).
const VPD_PAGES: [u8; 6] = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];

pub fn inquiry(
    lun: &dyn Lun,
    evpd: bool,
    page: u8,
    alloc: u16,
    limits: &Limits,
) -> Result<Vec<u8>, Sense> {
    let data = if !evpd {
        standard(0x00)
    } else {
        match page {
            0x00 => vpd(0x00, VPD_PAGES.to_vec()),
            0x80 => vpd(0x80, lun.serial().into_bytes()),
            0x83 => vpd(0x83, device_identification(lun)),
            0xb0 => vpd(0xb0, block_limits(lun, limits)),
            0xb1 => vpd(0xb1, block_device_characteristics()),
            0xb2 => vpd(0xb2, logical_block_provisioning(lun)),
            _ => return Err(Sense::invalid_field_in_cdb(2)),
        }
    };
    Ok(truncate(data, alloc as usize))
}

/// INQUIRY addressed to a LUN that does not exist: peripheral qualifier 3, device type 0x1F
/// (SPC-4 §6.6.2), so an initiator's scan stops there.
pub fn not_present(evpd: bool, alloc: u16) -> Result<Vec<u8>, Sense> {
    if evpd {
        return Err(Sense::lun_not_supported());
    }
    Ok(truncate(standard(0x7f), alloc as usize))
}

/// Standard INQUIRY data, 96 bytes so the version descriptors (bytes 58–73) fit.
fn standard(peripheral: u8) -> Vec<u8> {
    let mut d = vec![0u8; 96];
    d[0] = peripheral;
    d[2] = 0x06; // SPC-4
    d[3] = 0x12; // HISUP, response data format 2
    d[4] = (d.len() - 5) as u8;
    d[7] = 0x02; // CMDQUE
    d[8..16].copy_from_slice(VENDOR);
    d[16..32].copy_from_slice(PRODUCT);
    d[32..36].copy_from_slice(REVISION);
    // Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
    for (i, v) in [0x00a0u16, 0x0960, 0x0460, 0x04c0].iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    d
}

fn vpd(page: u8, body: Vec<u8>) -> Vec<u8> {
    let mut d = vec![0u8, page];
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(&body);
    d
}

/// Device identification (SPC-4 §7.8.6): an NAA IEEE Registered designator (what Linux uses
/// for /dev/disk/by-id) and a T10 vendor designator, both derived from the LUN's serial.
fn device_identification(lun: &dyn Lun) -> Vec<u8> {
    let serial = lun.serial();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in serial.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut body = Vec::new();
    // NAA 6 (IEEE Registered Extended), 16 bytes: 6h, a locally assigned OUI, 100 bits of id.
    body.extend_from_slice(&[0x01, 0x03, 0x00, 0x10]);
    let mut naa = [0u8; 16];
    naa[0] = 0x60 | 0x0d; // NAA 6, OUI high nibble
    naa[1] = 0xb1;
    naa[2] = 0x0c;
    naa[3] = 0xd0; // OUI low nibble 0 + id
    naa[4..12].copy_from_slice(&h.to_be_bytes());
    naa[12..16].copy_from_slice(&(h as u32 ^ 0x5a5a_5a5a).to_be_bytes());
    body.extend_from_slice(&naa);
    // T10 vendor identification: vendor (8) + serial.
    let mut t10 = VENDOR.to_vec();
    t10.extend_from_slice(serial.as_bytes());
    body.extend_from_slice(&[0x02, 0x01, 0x00, t10.len() as u8]);
    body.extend_from_slice(&t10);
    body
}

/// Block Limits (SBC-4 §6.6.4), 60 bytes of page (page length 0x3C).
fn block_limits(lun: &dyn Lun, limits: &Limits) -> Vec<u8> {
    let mut b = vec![0u8; 0x3c];
    let bs = lun.block_size();
    // Offsets below are page offsets minus the 4-byte header.
    b[0] = 0x01; // WSNZ: WRITE SAME with 0 blocks is refused, never "to the end"
    b[1] = limits.max_compare_and_write_blocks;
    b[2..4].copy_from_slice(&1u16.to_be_bytes()); // optimal transfer length granularity
    let max_blocks = limits.max_transfer_bytes / bs;
    b[4..8].copy_from_slice(&max_blocks.to_be_bytes());
    b[8..12].copy_from_slice(&((1u32 << 20) / bs).to_be_bytes()); // optimal transfer: 1 MiB
    if lun.supports_deallocate() {
        b[16..20].copy_from_slice(&limits.max_unmap_blocks.to_be_bytes());
        b[20..24].copy_from_slice(&limits.max_unmap_descriptors.to_be_bytes());
    }
    // Optimal unmap granularity: the 4 KiB tracking block. QEMU caches allocation per such
    // cluster when LBPRZ=1 (research/scsi-facts.md §4.1).
    b[24..28].copy_from_slice(&(4096 / bs).max(1).to_be_bytes());
    b[32..40].copy_from_slice(&(limits.max_write_same_blocks as u64).to_be_bytes());
    b
}

/// Block Device Characteristics (SBC-4 §6.6.2): non-rotating medium.
fn block_device_characteristics() -> Vec<u8> {
    let mut b = vec![0u8; 0x3c];
    b[0..2].copy_from_slice(&1u16.to_be_bytes());
    b
}

/// Logical Block Provisioning (SBC-4 §6.6.7): thin, LBPRZ=1; LBPU/LBPWS/LBPWS10 only when the
/// LUN can deallocate (libiscsi's consistency rule, research/scsi-facts.md §4.2).
fn logical_block_provisioning(lun: &dyn Lun) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    b[1] = 0x04; // LBPRZ
    if lun.supports_deallocate() {
        b[1] |= 0x80 | 0x40 | 0x20;
    }
    b[2] = 0x02; // thin provisioned
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_inquiry_claims_spc4_and_sbc3() {
        let d = standard(0);
        assert_eq!(d[2], 6);
        assert_eq!(d[4] as usize + 5, d.len());
        assert_eq!(&d[62..66], &[0x04, 0x60, 0x04, 0xc0]);
        assert!(d[8..36].iter().all(|c| c.is_ascii_graphic() || *c == b' '));
    }

    #[test]
    fn vpd_b2_for_read_only_matches_research_recommendation() {
        // `00 b2 00 04 00 04 02 00` per research/scsi-facts.md §4.2.
        let page = vpd(0xb2, vec![0, 0x04, 0x02, 0]);
        assert_eq!(page, [0x00, 0xb2, 0x00, 0x04, 0x00, 0x04, 0x02, 0x00]);
    }
}
