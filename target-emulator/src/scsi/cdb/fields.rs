//! The big-endian fields of a CDB and the checks every family of commands shares.

use super::super::sense::Sense;

/// Every CDB is parsed from a copy padded with zeros to this length: the longest CDB we
/// parse (GET LBA STATUS(32)), so fixed offsets can be read without bounds checks failing.
pub(super) const PADDED_LEN: usize = 32;

/// A CDB padded to [`PADDED_LEN`] bytes.
pub(super) type Padded = [u8; PADDED_LEN];

pub(super) fn u16_at(c: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([c[at], c[at + 1]])
}

pub(super) fn u32_at(c: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]])
}

pub(super) fn u64_at(c: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&c[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Length of a CDB by its group code (SPC-4 §4.2.5.1), or `None` for the variable-length CDB.
pub(super) fn fixed_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

/// Protection fields (RDPROTECT/WRPROTECT/VRPROTECT, byte 1 bits 7:5) must be zero: we format
/// no protection information, so SBC-4 §4.22 makes any other value an invalid field.
pub(super) fn no_protection(cdb: &[u8]) -> Result<(), Sense> {
    if cdb[1] & 0xe0 != 0 {
        return Err(Sense::invalid_bit_in_cdb(1, 7));
    }
    Ok(())
}
