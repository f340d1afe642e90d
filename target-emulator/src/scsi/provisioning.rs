//! UNMAP and WRITE SAME (SBC-4 §5.31, §5.50, §5.51): deallocation on a thin LUN.

use super::{cdb::WriteSame, limits::Limits, read_write, sense::Sense};
use crate::lun::Lun;

const UNMAP_HEADER_LEN: usize = 8;
const UNMAP_DESCRIPTOR_LEN: usize = 16;

/// UNMAP parameter list (SBC-4 §5.31.2): an 8-byte header, then 16-byte descriptors of
/// (LBA u64, blocks u32, reserved). All descriptors are checked before any is applied, so a bad
/// list changes nothing.
pub fn unmap(lun: &dyn Lun, params: &[u8], limits: &Limits) -> Result<(), Sense> {
    if lun.read_only() {
        return Err(Sense::write_protected());
    }
    if !lun.supports_deallocate() {
        return Err(Sense::invalid_opcode());
    }
    if params.is_empty() {
        return Ok(());
    }
    if params.len() < UNMAP_HEADER_LEN {
        return Err(Sense::parameter_list_length_error());
    }
    let block_data_len = u16::from_be_bytes([params[2], params[3]]) as usize;
    let available = (params.len() - UNMAP_HEADER_LEN).min(block_data_len);
    let count = available / UNMAP_DESCRIPTOR_LEN;
    if count > limits.max_unmap_descriptors as usize {
        return Err(Sense::invalid_field_in_parameter_list(2));
    }
    let mut ranges = Vec::with_capacity(count);
    for i in 0..count {
        let d = &params[UNMAP_HEADER_LEN + i * UNMAP_DESCRIPTOR_LEN..][..UNMAP_DESCRIPTOR_LEN];
        let mut lba = [0u8; 8];
        lba.copy_from_slice(&d[0..8]);
        let lba = u64::from_be_bytes(lba);
        let blocks = u32::from_be_bytes([d[8], d[9], d[10], d[11]]) as u64;
        if blocks > limits.max_unmap_blocks as u64 {
            return Err(Sense::invalid_field_in_parameter_list(
                (UNMAP_HEADER_LEN + i * 16 + 8) as u16,
            ));
        }
        let end = lba
            .checked_add(blocks)
            .ok_or_else(Sense::lba_out_of_range)?;
        if end > lun.block_count() {
            return Err(Sense::lba_out_of_range());
        }
        ranges.push((lba, blocks));
    }
    for (lba, blocks) in ranges {
        if blocks > 0 {
            lun.deallocate(lba, blocks)
                .map_err(|e| Sense::from_lun_error(&e, true))?;
        }
    }
    Ok(())
}

/// Bytes of data-out WRITE SAME expects: one block, or none with NDOB.
pub fn write_same_data_len(lun: &dyn Lun, w: &WriteSame) -> usize {
    if w.no_data_out {
        0
    } else {
        lun.block_size() as usize
    }
}

pub fn check_write_same(lun: &dyn Lun, w: &WriteSame, limits: &Limits) -> Result<(), Sense> {
    let length_field = if w.long_form { 10 } else { 7 };
    if w.range.blocks == 0 {
        // WSNZ=1 in VPD 0xB0: zero blocks is not "to the end of the medium" here.
        return Err(Sense::invalid_field_in_cdb(length_field));
    }
    if w.anchor {
        return Err(Sense::invalid_bit_in_cdb(1, 4));
    }
    if lun.read_only() {
        return Err(Sense::write_protected());
    }
    if w.unmap && !lun.supports_deallocate() {
        return Err(Sense::invalid_bit_in_cdb(1, 3));
    }
    if w.range.blocks > limits.max_write_same_blocks as u64 {
        return Err(Sense::invalid_field_in_cdb(length_field));
    }
    read_write::check_range(lun, &w.range, None)
}

pub fn write_same(lun: &dyn Lun, w: &WriteSame, data: &[u8]) -> Result<(), Sense> {
    let bs = lun.block_size() as usize;
    let zeros;
    let block: &[u8] = if w.no_data_out {
        zeros = vec![0u8; bs];
        &zeros
    } else {
        &data[..bs]
    };
    // With UNMAP and a zero block, deallocation gives the same contents (LBPRZ=1) for free.
    if w.unmap && block.iter().all(|b| *b == 0) {
        return lun
            .deallocate(w.range.lba, w.range.blocks)
            .map_err(|e| Sense::from_lun_error(&e, true));
    }
    const CHUNK_BLOCKS: u64 = 256;
    let pattern: Vec<u8> = block.repeat(CHUNK_BLOCKS.min(w.range.blocks) as usize);
    let mut lba = w.range.lba;
    let end = w.range.lba + w.range.blocks;
    while lba < end {
        let n = CHUNK_BLOCKS.min(end - lba);
        lun.write(lba, &pattern[..n as usize * bs])
            .map_err(|e| Sense::from_lun_error(&e, true))?;
        lba += n;
    }
    Ok(())
}
