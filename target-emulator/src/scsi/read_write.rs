//! READ, WRITE, VERIFY, PRE-FETCH and SYNCHRONIZE CACHE over a block range (SBC-4 §5).

use super::{Limits, cdb::BlockRange, sense::Sense};
use crate::lun::Lun;

/// Checks a range against the capacity and the transfer limit (SBC-4 §4.5: LBA + blocks past
/// the end is LOGICAL BLOCK ADDRESS OUT OF RANGE; more than the advertised maximum transfer is
/// INVALID FIELD IN CDB, pointing at the TRANSFER LENGTH field).
pub fn check_range(
    lun: &dyn Lun,
    r: &BlockRange,
    limits: Option<(&Limits, u16)>,
) -> Result<(), Sense> {
    let end = r
        .lba
        .checked_add(r.blocks)
        .ok_or_else(Sense::lba_out_of_range)?;
    if r.lba > lun.block_count() || end > lun.block_count() {
        return Err(Sense::lba_out_of_range());
    }
    if let Some((limits, length_field)) = limits {
        if r.blocks * lun.block_size() as u64 > limits.max_transfer_bytes as u64 {
            return Err(Sense::invalid_field_in_cdb(length_field));
        }
    }
    Ok(())
}

pub fn read(lun: &dyn Lun, r: &BlockRange) -> Result<Vec<u8>, Sense> {
    let mut buf = vec![0u8; (r.blocks * lun.block_size() as u64) as usize];
    if !buf.is_empty() {
        lun.read(r.lba, &mut buf)
            .map_err(|e| Sense::from_lun_error(&e, false))?;
    }
    Ok(buf)
}

pub fn write(lun: &dyn Lun, r: &BlockRange, data: &[u8]) -> Result<(), Sense> {
    let len = (r.blocks * lun.block_size() as u64) as usize;
    if len == 0 {
        return Ok(());
    }
    lun.write(r.lba, &data[..len])
        .map_err(|e| Sense::from_lun_error(&e, true))
}

/// VERIFY with BYTCHK=1: compare the data-out buffer with the medium; the first differing byte
/// goes in the INFORMATION field of the MISCOMPARE sense.
pub fn verify(lun: &dyn Lun, r: &BlockRange, byte_check: bool, data: &[u8]) -> Result<(), Sense> {
    if !byte_check || r.blocks == 0 {
        return Ok(());
    }
    let medium = read(lun, r)?;
    match medium.iter().zip(data).position(|(a, b)| a != b) {
        Some(at) => Err(Sense::miscompare(at as u32)),
        None => Ok(()),
    }
}
