//! READ CAPACITY(10) and (16) (SBC-4 §5.19, §5.20).

use super::{allocation::truncate, sense::Sense};
use crate::lun::Lun;

pub fn read_capacity_10(lun: &dyn Lun) -> Vec<u8> {
    let last = lun.block_count() - 1;
    // 0xFFFFFFFF tells the initiator to use READ CAPACITY(16).
    let last32 = u32::try_from(last).unwrap_or(u32::MAX);
    let mut d = Vec::with_capacity(8);
    d.extend_from_slice(&last32.to_be_bytes());
    d.extend_from_slice(&lun.block_size().to_be_bytes());
    d
}

pub fn read_capacity_16(lun: &dyn Lun, alloc: u32) -> Result<Vec<u8>, Sense> {
    let mut d = vec![0u8; 32];
    d[0..8].copy_from_slice(&(lun.block_count() - 1).to_be_bytes());
    d[8..12].copy_from_slice(&lun.block_size().to_be_bytes());
    // LBPME=1 (thin: GET LBA STATUS means something), LBPRZ=1 (deallocated reads as zeros).
    d[14] = 0x80 | 0x40;
    Ok(truncate(d, alloc as usize))
}
