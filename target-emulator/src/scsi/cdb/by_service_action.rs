//! Commands whose operation code is shared and whose service action says what they are:
//! SERVICE ACTION IN(16) (READ CAPACITY(16), GET LBA STATUS(16)), MAINTENANCE IN (REPORT
//! SUPPORTED OPERATION CODES) and the variable-length CDB (GET LBA STATUS(32), SPC-4 §4.2.4).

use super::super::sense::Sense;
use super::codes::{op, service_action};
use super::command::{Command, GetLbaStatus, ReportOpcodes};
use super::fields::{Padded, u16_at, u32_at, u64_at};

/// Parses the service-action command with `opcode`. `cdb_len` is the length before padding:
/// a variable-length CDB must be as long as its ADDITIONAL CDB LENGTH says.
pub(super) fn parse(opcode: u8, c: &Padded, cdb_len: usize) -> Result<Command, Sense> {
    Ok(match opcode {
        op::MAINTENANCE_IN => match c[1] & 0x1f {
            service_action::REPORT_SUPPORTED_OPERATION_CODES => {
                Command::ReportSupportedOpcodes(ReportOpcodes {
                    timeouts: c[2] & 0x80 != 0,
                    reporting_options: c[2] & 0x07,
                    opcode: c[3],
                    service_action: u16_at(c, 4),
                    allocation_length: u32_at(c, 6),
                })
            }
            // libiscsi reads INVALID FIELD IN CDB at byte 1 as "not implemented".
            _ => return Err(Sense::invalid_field_in_cdb(1)),
        },
        op::SERVICE_ACTION_IN_16 => match c[1] & 0x1f {
            service_action::READ_CAPACITY_16 => Command::ReadCapacity16 {
                allocation_length: u32_at(c, 10),
            },
            sa if sa as u16 == service_action::GET_LBA_STATUS => {
                Command::GetLbaStatus(GetLbaStatus {
                    lba: u64_at(c, 2),
                    allocation_length: u32_at(c, 10),
                    report_type: c[14],
                    scan_length: 0,
                    element_id: 0,
                    long_form: false,
                })
            }
            // libiscsi reads INVALID FIELD IN CDB at byte 1 as "not implemented".
            _ => return Err(Sense::invalid_field_in_cdb(1)),
        },
        op::VARIABLE_LENGTH => {
            // SPC-4 §4.2.4: byte 7 ADDITIONAL CDB LENGTH, total = 8 + it; bytes 8–9 SA.
            let total = 8 + c[7] as usize;
            if cdb_len < total {
                return Err(Sense::invalid_field_in_cdb(7));
            }
            match u16_at(c, 8) {
                service_action::GET_LBA_STATUS if total == 32 => {
                    Command::GetLbaStatus(GetLbaStatus {
                        report_type: c[10],
                        lba: u64_at(c, 12),
                        scan_length: u32_at(c, 20),
                        element_id: u32_at(c, 24),
                        allocation_length: u32_at(c, 28),
                        long_form: true,
                    })
                }
                service_action::GET_LBA_STATUS => return Err(Sense::invalid_field_in_cdb(7)),
                _ => return Err(Sense::invalid_field_in_cdb(8)),
            }
        }
        _ => return Err(Sense::invalid_opcode()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn get_lba_status_16_fields() {
        let mut c = [0u8; 16];
        c[0] = 0x9e;
        c[1] = 0x12;
        c[2..10].copy_from_slice(&1234u64.to_be_bytes());
        c[10..14].copy_from_slice(&4096u32.to_be_bytes());
        c[14] = 1;
        let Command::GetLbaStatus(g) = parse(&c).unwrap() else {
            panic!()
        };
        assert_eq!(
            (g.lba, g.allocation_length, g.report_type, g.long_form),
            (1234, 4096, 1, false)
        );
    }

    /// The layout sg3_utils sends for `-T` (research/scsi-facts.md §1.2).
    #[test]
    fn get_lba_status_32_fields() {
        let mut c = [0u8; 32];
        c[0] = 0x7f;
        c[7] = 0x18;
        c[8..10].copy_from_slice(&0x12u16.to_be_bytes());
        c[10] = 1;
        c[12..20].copy_from_slice(&7u64.to_be_bytes());
        c[20..24].copy_from_slice(&2_097_152u32.to_be_bytes());
        c[28..32].copy_from_slice(&4096u32.to_be_bytes());
        let Command::GetLbaStatus(g) = parse(&c).unwrap() else {
            panic!()
        };
        assert_eq!(g.lba, 7);
        assert_eq!(g.scan_length, 2_097_152);
        assert_eq!(g.allocation_length, 4096);
        assert_eq!(g.report_type, 1);
        assert!(g.long_form);
    }

    #[test]
    fn variable_length_cdb_without_its_ahs_is_refused() {
        let mut c = [0u8; 16];
        c[0] = 0x7f;
        c[7] = 0x18;
        assert_eq!(parse(&c), Err(Sense::invalid_field_in_cdb(7)));
    }
}
