//! READ, WRITE, VERIFY, WRITE AND VERIFY, COMPARE AND WRITE, ORWRITE, PRE-FETCH and
//! SYNCHRONIZE CACHE over a block range (SBC-4 §5).
//!
//! COMPARE AND WRITE and ORWRITE read, decide and write; the caller holds the unit's media lock
//! exclusively around them (see [`super::UnitState`]), which makes them atomic.

use super::{cdb::BlockRange, limits::Limits, sense::Sense};
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
    if let Some((limits, length_field)) = limits
        && r.blocks * lun.block_size() as u64 > limits.max_transfer_bytes as u64
    {
        return Err(Sense::invalid_field_in_cdb(length_field));
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

/// WRITE; with `fua` (force unit access) the data is made durable before GOOD, since we
/// report a volatile write cache (WCE=1).
pub fn write(lun: &dyn Lun, r: &BlockRange, data: &[u8], fua: bool) -> Result<(), Sense> {
    let len = (r.blocks * lun.block_size() as u64) as usize;
    if len == 0 {
        return Ok(());
    }
    lun.write(r.lba, &data[..len])
        .map_err(|e| Sense::from_lun_error(&e, true))?;
    if fua {
        lun.flush().map_err(|e| Sense::from_lun_error(&e, true))?;
    }
    Ok(())
}

/// WRITE AND VERIFY (SBC-4 §5.42–5.44): a durable write, then a check of what the medium now
/// holds (a compare with the buffer when `byte_check`).
pub fn write_and_verify(
    lun: &dyn Lun,
    r: &BlockRange,
    byte_check: bool,
    data: &[u8],
) -> Result<(), Sense> {
    write(lun, r, data, true)?;
    let medium = read(lun, r)?;
    if byte_check && let Some(at) = first_difference(&medium, data) {
        return Err(Sense::miscompare(at as u32));
    }
    Ok(())
}

/// COMPARE AND WRITE (SBC-4 §5.3): `data` holds the blocks to compare, then the blocks to
/// write. Nothing is written unless every compared byte matches; the INFORMATION field of the
/// MISCOMPARE sense holds the offset of the first byte that did not.
pub fn compare_and_write(
    lun: &dyn Lun,
    r: &BlockRange,
    data: &[u8],
    fua: bool,
) -> Result<(), Sense> {
    let len = (r.blocks * lun.block_size() as u64) as usize;
    if len == 0 {
        return Ok(());
    }
    let medium = read(lun, r)?;
    if let Some(at) = first_difference(&medium, &data[..len]) {
        return Err(Sense::miscompare(at as u32));
    }
    write(lun, r, &data[len..2 * len], fua)
}

/// ORWRITE(16) (SBC-4 §5.13): each block becomes the bitwise OR of itself and the data-out.
pub fn or_write(lun: &dyn Lun, r: &BlockRange, data: &[u8], fua: bool) -> Result<(), Sense> {
    let mut medium = read(lun, r)?;
    for (m, d) in medium.iter_mut().zip(data) {
        *m |= d;
    }
    write(lun, r, &medium, fua)
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// VERIFY with BYTCHK=1: compare the data-out buffer with the medium; the first differing byte
/// goes in the INFORMATION field of the MISCOMPARE sense.
pub fn verify(lun: &dyn Lun, r: &BlockRange, byte_check: bool, data: &[u8]) -> Result<(), Sense> {
    if !byte_check || r.blocks == 0 {
        return Ok(());
    }
    let medium = read(lun, r)?;
    match first_difference(&medium, data) {
        Some(at) => Err(Sense::miscompare(at as u32)),
        None => Ok(()),
    }
}
