//! The commands every logical unit answers the same way, whatever its medium holds: REPORT
//! LUNS (SPC-4 §6.33), REQUEST SENSE (SPC-4 §6.39) and READ DEFECT DATA (SBC-4 §5.17–5.18,
//! the one block command here, kept with them because a file has no defects to read). None of
//! them reads the LUN; the first two also answer for a LUN that does not exist.

use super::allocation::truncate;
use super::cdb::ReadDefectData;
use super::sense::Sense;

/// READ DEFECT DATA (SBC-4 §5.17, §5.18): a file has no defects. The header echoes the lists
/// and format asked for, with an empty list.
pub(super) fn read_defect_data(r: &ReadDefectData) -> Vec<u8> {
    let flags = (u8::from(r.primary_list) << 4) | (u8::from(r.grown_list) << 3) | r.format;
    let d = if r.twelve_byte {
        vec![0, flags, 0, 0, 0, 0, 0, 0]
    } else {
        vec![0, flags, 0, 0]
    };
    truncate(d, r.allocation_length as usize)
}

/// REPORT LUNS (SPC-4 §6.33): every target name has exactly one LUN, LUN 0.
pub(super) fn report_luns(alloc: u32) -> Vec<u8> {
    let mut d = vec![0u8; 16];
    d[0..4].copy_from_slice(&8u32.to_be_bytes());
    truncate(d, alloc as usize)
}

/// REQUEST SENSE (SPC-4 §6.39): every CHECK CONDITION carries its sense (autosense), so the
/// only thing pending is a unit attention condition; otherwise NO SENSE.
pub(super) fn sense_data(pending: Option<Sense>, descriptor_format: bool, alloc: u8) -> Vec<u8> {
    let sense = pending.unwrap_or_else(Sense::no_sense);
    let d = if descriptor_format {
        sense.to_descriptor_bytes()
    } else {
        sense.to_bytes()
    };
    truncate(d, alloc as usize)
}
