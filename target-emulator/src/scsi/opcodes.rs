//! REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35): the table of commands [`super::cdb::parse`]
//! accepts, each with its CDB usage data (the bits the device server looks at).
//!
//! The table and the parser must agree; a unit test walks every operation code through both.
//! Usage data drive initiators' choices: libiscsi, for one, reads DPO/FUA support from byte 1.
//!
//! One exception: GET LBA STATUS(32) answers a query for itself (reporting options 2 and 3)
//! but is left out of the full list (option 0). libiscsi 1.19 keeps at most 16 bytes of CDB
//! usage data (`cdb_usage_data[16]` in scsi-lowlevel.h) and drops longer ones, so its
//! ReportSupportedOpcodes.OneCommand test fails on any 32-byte CDB in the list.

use super::allocation::truncate;
use super::cdb::{ReportOpcodes, op, service_action};
use super::sense::Sense;

/// One supported command.
struct Supported {
    opcode: u8,
    /// `Some` for commands told apart by a service action (SERVACTV=1).
    service_action: Option<u16>,
    usage: &'static [u8],
}

impl Supported {
    /// Whether the full list (reporting options 0) names it; see the module documentation.
    fn in_full_list(&self) -> bool {
        self.usage.len() <= 16
    }
}

const fn cmd(opcode: u8, usage: &'static [u8]) -> Supported {
    Supported {
        opcode,
        service_action: None,
        usage,
    }
}

const fn sa(opcode: u8, service_action: u16, usage: &'static [u8]) -> Supported {
    Supported {
        opcode,
        service_action: Some(service_action),
        usage,
    }
}

/// Byte 1 of the read and write CDBs: DPO (bit 4) and FUA (bit 3); the protection fields are
/// checked (non-zero is refused), so they count as used too.
const RW: u8 = 0xe0 | 0x18;
/// Byte 1 of VERIFY: VRPROTECT, DPO, BYTCHK.
const VERIFY: u8 = 0xe0 | 0x10 | 0x06;
/// Byte 1 of WRITE AND VERIFY: WRPROTECT, DPO, BYTCHK.
const WRITE_VERIFY: u8 = 0xe0 | 0x10 | 0x06;

#[rustfmt::skip]
const SUPPORTED: &[Supported] = &[
    cmd(op::TEST_UNIT_READY, &[0x00, 0, 0, 0, 0, 0]),
    cmd(op::REQUEST_SENSE, &[0x03, 0x01, 0, 0, 0xff, 0]),
    cmd(op::READ_6, &[0x08, 0x1f, 0xff, 0xff, 0xff, 0]),
    cmd(op::WRITE_6, &[0x0a, 0x1f, 0xff, 0xff, 0xff, 0]),
    cmd(op::INQUIRY, &[0x12, 0x01, 0xff, 0xff, 0xff, 0]),
    cmd(op::RESERVE_6, &[0x16, 0x1f, 0, 0, 0, 0]),
    cmd(op::RELEASE_6, &[0x17, 0x1f, 0, 0, 0, 0]),
    cmd(op::MODE_SENSE_6, &[0x1a, 0x08, 0xff, 0xff, 0xff, 0]),
    cmd(op::READ_CAPACITY_10, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    cmd(op::READ_10, &[0x28, RW, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0]),
    cmd(op::WRITE_10, &[0x2a, RW, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0]),
    cmd(op::WRITE_AND_VERIFY_10, &[0x2e, WRITE_VERIFY, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0]),
    cmd(op::VERIFY_10, &[0x2f, VERIFY, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0]),
    cmd(op::PRE_FETCH_10, &[0x34, 0, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0]),
    cmd(op::SYNCHRONIZE_CACHE_10, &[0x35, 0, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0]),
    cmd(op::READ_DEFECT_DATA_10, &[0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0]),
    cmd(op::WRITE_SAME_10, &[0x41, 0xf8, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0]),
    cmd(op::UNMAP, &[0x42, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    cmd(op::MODE_SENSE_10, &[0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0]),
    sa(op::PERSISTENT_RESERVE_IN, 0, &[0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    sa(op::PERSISTENT_RESERVE_IN, 1, &[0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    sa(op::PERSISTENT_RESERVE_IN, 2, &[0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    sa(op::PERSISTENT_RESERVE_IN, 3, &[0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 0, &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 1, &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 2, &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 3, &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 4, &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 5, &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 6, &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    sa(op::VARIABLE_LENGTH, service_action::GET_LBA_STATUS, &[
        0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff,
    ]),
    cmd(op::READ_16, &[0x88, RW, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    cmd(op::COMPARE_AND_WRITE, &[0x89, RW, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0, 0]),
    cmd(op::WRITE_16, &[0x8a, RW, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    cmd(op::ORWRITE_16, &[0x8b, RW, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    cmd(op::WRITE_AND_VERIFY_16, &[0x8e, WRITE_VERIFY, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    cmd(op::VERIFY_16, &[0x8f, VERIFY, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    cmd(op::PRE_FETCH_16, &[0x90, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    cmd(op::SYNCHRONIZE_CACHE_16, &[0x91, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    cmd(op::WRITE_SAME_16, &[0x93, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    sa(op::SERVICE_ACTION_IN_16, service_action::READ_CAPACITY_16 as u16, &[
        0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
    ]),
    sa(op::SERVICE_ACTION_IN_16, service_action::GET_LBA_STATUS, &[
        0x9e, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
    ]),
    cmd(op::REPORT_LUNS, &[0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    sa(op::MAINTENANCE_IN, service_action::REPORT_SUPPORTED_OPERATION_CODES as u16, &[
        0xa3, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
    ]),
    cmd(op::READ_12, &[0xa8, RW, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    cmd(op::WRITE_12, &[0xaa, RW, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    cmd(op::WRITE_AND_VERIFY_12, &[0xae, WRITE_VERIFY, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    cmd(op::VERIFY_12, &[0xaf, VERIFY, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    cmd(op::READ_DEFECT_DATA_12, &[0xb7, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
];

/// Reporting options (SPC-4 §6.35.1, SPC-5 adds 3).
mod options {
    pub const ALL: u8 = 0;
    pub const BY_OPCODE: u8 = 1;
    pub const BY_SERVICE_ACTION: u8 = 2;
    pub const EITHER: u8 = 3;
}

/// SUPPORT field values of the one-command format (SPC-4 table 261).
const NOT_SUPPORTED: u8 = 1;
const SUPPORTED_BY_STANDARD: u8 = 3;

/// Command timeouts descriptor (SPC-4 §6.35.4): length 0Ah, no command-specific field, no
/// nominal time, and a recommended timeout of 60 s for everything.
fn timeouts() -> [u8; 12] {
    let mut t = [0u8; 12];
    t[0..2].copy_from_slice(&0x000au16.to_be_bytes());
    t[8..12].copy_from_slice(&60u32.to_be_bytes());
    t
}

pub fn report(req: &ReportOpcodes) -> Result<Vec<u8>, Sense> {
    let ctdp = if req.timeouts { 0x02 } else { 0 };
    let data = match req.reporting_options {
        options::ALL => {
            let mut body = Vec::new();
            for s in SUPPORTED.iter().filter(|s| s.in_full_list()) {
                body.push(s.opcode);
                body.push(0);
                body.extend_from_slice(&s.service_action.unwrap_or(0).to_be_bytes());
                body.push(0);
                body.push(ctdp | u8::from(s.service_action.is_some()));
                body.extend_from_slice(&(s.usage.len() as u16).to_be_bytes());
                if req.timeouts {
                    body.extend_from_slice(&timeouts());
                }
            }
            let mut d = (body.len() as u32).to_be_bytes().to_vec();
            d.extend(body);
            d
        }
        options::BY_OPCODE | options::BY_SERVICE_ACTION | options::EITHER => {
            let listed = SUPPORTED.iter().any(|s| s.opcode == req.opcode);
            let has_actions = SUPPORTED
                .iter()
                .any(|s| s.opcode == req.opcode && s.service_action.is_some());
            let by_action = match req.reporting_options {
                options::BY_OPCODE => false,
                options::BY_SERVICE_ACTION => true,
                _ => has_actions,
            };
            // Asking by operation code alone for a command with service actions, or by
            // service action for one without, is an invalid field (SPC-4 §6.35.1).
            if listed && has_actions != by_action {
                return Err(Sense::invalid_field_in_cdb(if by_action { 4 } else { 3 }));
            }
            let found = SUPPORTED.iter().find(|s| {
                s.opcode == req.opcode
                    && (!by_action || s.service_action == Some(req.service_action))
            });
            let mut d = vec![0u8; 4];
            match found {
                Some(s) => {
                    d[1] = (ctdp << 6) | SUPPORTED_BY_STANDARD;
                    d[2..4].copy_from_slice(&(s.usage.len() as u16).to_be_bytes());
                    d.extend_from_slice(s.usage);
                    if req.timeouts {
                        d.extend_from_slice(&timeouts());
                    }
                }
                None => d[1] = NOT_SUPPORTED,
            }
            d
        }
        _ => return Err(Sense::invalid_field_in_cdb(2)),
    };
    Ok(truncate(data, req.allocation_length as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::cdb;

    fn minimal_cdb(opcode: u8, service_action: Option<u16>) -> Vec<u8> {
        let mut c = vec![0u8; 32];
        c[0] = opcode;
        match (opcode, service_action) {
            (op::VARIABLE_LENGTH, Some(s)) => {
                c[7] = 0x18;
                c[8..10].copy_from_slice(&s.to_be_bytes());
            }
            (_, Some(s)) => c[1] = s as u8,
            _ => {}
        }
        c
    }

    /// Every listed command parses, and every operation code the parser takes is listed.
    #[test]
    fn table_matches_the_parser() {
        for s in SUPPORTED {
            let c = minimal_cdb(s.opcode, s.service_action);
            assert_ne!(
                cdb::parse(&c),
                Err(Sense::invalid_opcode()),
                "{:02x} listed but not parsed",
                s.opcode
            );
            assert_eq!(s.usage[0], s.opcode);
        }
        for opcode in 0..=255u8 {
            let c = minimal_cdb(opcode, None);
            let listed = SUPPORTED.iter().any(|s| s.opcode == opcode);
            let parsed = cdb::parse(&c) != Err(Sense::invalid_opcode());
            assert_eq!(listed, parsed, "opcode {opcode:02x}");
        }
    }

    fn ask(options: u8, opcode: u8, service_action: u16) -> Result<Vec<u8>, Sense> {
        report(&ReportOpcodes {
            timeouts: false,
            reporting_options: options,
            opcode,
            service_action,
            allocation_length: 4096,
        })
    }

    #[test]
    fn one_command_formats() {
        let read10 = ask(options::BY_OPCODE, op::READ_10, 0).unwrap();
        assert_eq!(read10[1], SUPPORTED_BY_STANDARD);
        assert_eq!(read10[4], op::READ_10);
        assert_eq!(read10[5] & 0x18, 0x18, "DPO and FUA are honoured");
        assert!(ask(options::BY_OPCODE, op::PERSISTENT_RESERVE_IN, 0).is_err());
        assert!(ask(options::BY_SERVICE_ACTION, op::READ_10, 0).is_err());
        let rc16 = ask(options::BY_SERVICE_ACTION, op::SERVICE_ACTION_IN_16, 0x10).unwrap();
        assert_eq!(rc16[1], SUPPORTED_BY_STANDARD);
        assert_eq!(ask(options::BY_OPCODE, 0xc0, 0).unwrap()[1], NOT_SUPPORTED);
        let glbs32 = ask(options::BY_SERVICE_ACTION, op::VARIABLE_LENGTH, 0x12).unwrap();
        assert_eq!(
            (glbs32[1], glbs32[3], glbs32[4]),
            (SUPPORTED_BY_STANDARD, 32, 0x7f)
        );
        assert!(ask(7, 0, 0).is_err());
    }

    #[test]
    fn all_commands_with_timeouts() {
        let d = report(&ReportOpcodes {
            timeouts: true,
            reporting_options: options::ALL,
            opcode: 0,
            service_action: 0,
            allocation_length: 65535,
        })
        .unwrap();
        let len = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
        let listed = SUPPORTED.iter().filter(|s| s.in_full_list()).count();
        assert_eq!(len, listed * 20);
        assert_eq!(
            listed,
            SUPPORTED.len() - 1,
            "only GET LBA STATUS(32) is left out"
        );
        assert_eq!(d.len(), 4 + len);
        assert!(
            d[4..]
                .chunks(20)
                .all(|c| c[5] & 0x02 != 0 && c[8..10] == [0, 0x0a])
        );
    }
}
