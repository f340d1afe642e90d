//! CDB parsing: bytes in, a typed [`Command`] out (SPC-4, SBC-4). Pure and total: any byte
//! string gives a command or a [`Sense`], never a panic (fuzzed by `fuzz/fuzz_targets/cdb.rs`).
//!
//! [`parse`] only dispatches on the operation code; each family of commands has its own parser:
//! [`spc`] (commands every device has), [`read_write`] (block ranges), [`provisioning`] (WRITE
//! SAME, UNMAP), [`medium`] (capacity, defects) and [`by_service_action`] (commands a service
//! action selects). [`codes`] names the operation codes, [`command`] the parsed values.

mod by_service_action;
mod codes;
mod command;
mod fields;
mod medium;
mod provisioning;
mod read_write;
mod spc;

pub use codes::{op, service_action};
pub use command::{
    BlockRange, Command, GetLbaStatus, ModeSense, ReadDefectData, ReportOpcodes, ReserveOut,
    WriteSame,
};

use super::sense::Sense;
use fields::{PADDED_LEN, fixed_len};

/// Parses a CDB. `cdb` is at least 16 bytes when it came from a SCSI Command BHS; shorter input
/// is padded with zeros so the parser is total.
pub fn parse(cdb: &[u8]) -> Result<Command, Sense> {
    let mut padded = [0u8; PADDED_LEN];
    let n = cdb.len().min(PADDED_LEN);
    padded[..n].copy_from_slice(&cdb[..n]);
    let c = &padded;
    let opcode = c[0];
    if let Some(len) = fixed_len(opcode)
        && cdb.len() < len
    {
        return Err(Sense::invalid_field_in_cdb(0));
    }
    match opcode {
        op::TEST_UNIT_READY
        | op::REQUEST_SENSE
        | op::INQUIRY
        | op::MODE_SENSE_6
        | op::MODE_SENSE_10
        | op::RESERVE_6
        | op::RELEASE_6
        | op::PERSISTENT_RESERVE_IN
        | op::PERSISTENT_RESERVE_OUT
        | op::REPORT_LUNS => spc::parse(opcode, c),
        op::READ_6
        | op::WRITE_6
        | op::READ_10
        | op::WRITE_10
        | op::WRITE_AND_VERIFY_10
        | op::VERIFY_10
        | op::PRE_FETCH_10
        | op::SYNCHRONIZE_CACHE_10
        | op::READ_12
        | op::WRITE_12
        | op::WRITE_AND_VERIFY_12
        | op::VERIFY_12
        | op::READ_16
        | op::WRITE_16
        | op::WRITE_AND_VERIFY_16
        | op::VERIFY_16
        | op::PRE_FETCH_16
        | op::SYNCHRONIZE_CACHE_16
        | op::COMPARE_AND_WRITE
        | op::ORWRITE_16 => read_write::parse(opcode, c),
        op::WRITE_SAME_10 | op::WRITE_SAME_16 | op::UNMAP => provisioning::parse(opcode, c),
        op::READ_CAPACITY_10 | op::READ_DEFECT_DATA_10 | op::READ_DEFECT_DATA_12 => {
            medium::parse(opcode, c)
        }
        op::MAINTENANCE_IN | op::SERVICE_ACTION_IN_16 | op::VARIABLE_LENGTH => {
            by_service_action::parse(opcode, c, cdb.len())
        }
        _ => Err(Sense::invalid_opcode()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unknown_opcode() {
        assert_eq!(parse(&[0xc0; 16]), Err(Sense::invalid_opcode()));
    }
    proptest! {
        #[test]
        fn parser_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse(&bytes);
        }
    }
}
