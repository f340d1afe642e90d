//! CDB parsing: bytes in, a typed [`Command`] out (SPC-4, SBC-4). Pure and total: any byte
//! string gives a command or a [`Sense`], never a panic (fuzzed by `fuzz/fuzz_targets/cdb.rs`).

use super::sense::Sense;

/// Operation codes we recognise.
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0a;
    pub const INQUIRY: u8 = 0x12;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const WRITE_AND_VERIFY_10: u8 = 0x2e;
    pub const VERIFY_10: u8 = 0x2f;
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5e;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5f;
    pub const VARIABLE_LENGTH: u8 = 0x7f;
    pub const READ_16: u8 = 0x88;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const WRITE_16: u8 = 0x8a;
    pub const ORWRITE_16: u8 = 0x8b;
    pub const WRITE_AND_VERIFY_16: u8 = 0x8e;
    pub const VERIFY_16: u8 = 0x8f;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
    pub const MAINTENANCE_IN: u8 = 0xa3;
    pub const READ_12: u8 = 0xa8;
    pub const WRITE_12: u8 = 0xaa;
    pub const WRITE_AND_VERIFY_12: u8 = 0xae;
    pub const VERIFY_12: u8 = 0xaf;
    pub const READ_DEFECT_DATA_12: u8 = 0xb7;
}

/// Service actions under SERVICE ACTION IN(16), MAINTENANCE IN and the variable-length CDB.
pub mod service_action {
    pub const READ_CAPACITY_16: u8 = 0x10;
    pub const GET_LBA_STATUS: u16 = 0x12;
    pub const REPORT_SUPPORTED_OPERATION_CODES: u8 = 0x0c;
}

/// A read, write, verify or pre-fetch of a block range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    pub lba: u64,
    pub blocks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetLbaStatus {
    pub lba: u64,
    pub allocation_length: u32,
    pub report_type: u8,
    /// Logical blocks to scan; 0 = to the end. Only the 32-byte form carries it.
    pub scan_length: u32,
    pub element_id: u32,
    /// True for the 32-byte form: field pointers in sense data differ.
    pub long_form: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSense {
    pub ten_byte: bool,
    pub disable_block_descriptors: bool,
    pub long_lba_accepted: bool,
    pub page_control: u8,
    pub page: u8,
    pub subpage: u8,
    pub allocation_length: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSame {
    pub range: BlockRange,
    pub unmap: bool,
    pub anchor: bool,
    /// No data-out buffer: the block is all zeros (WRITE SAME(16) NDOB).
    pub no_data_out: bool,
    pub long_form: bool,
}

/// READ DEFECT DATA(10) and (12) (SBC-4 §5.17, §5.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadDefectData {
    pub twelve_byte: bool,
    pub primary_list: bool,
    pub grown_list: bool,
    pub format: u8,
    pub allocation_length: u32,
}

/// REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOpcodes {
    /// RCTD: append a command timeouts descriptor to each command.
    pub timeouts: bool,
    pub reporting_options: u8,
    pub opcode: u8,
    pub service_action: u16,
    pub allocation_length: u32,
}

/// PERSISTENT RESERVE OUT (SPC-4 §6.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveOut {
    pub service_action: u8,
    pub scope: u8,
    pub kind: u8,
    pub parameter_list_length: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    TestUnitReady,
    RequestSense {
        descriptor_format: bool,
        allocation_length: u8,
    },
    Inquiry {
        evpd: bool,
        page: u8,
        allocation_length: u16,
    },
    ModeSense(ModeSense),
    ReadCapacity10,
    ReadCapacity16 {
        allocation_length: u32,
    },
    Read(BlockRange),
    /// WRITE; FUA (force unit access) makes the data durable before GOOD.
    Write {
        range: BlockRange,
        fua: bool,
    },
    /// VERIFY; with `byte_check` the data-out buffer is compared with the medium.
    Verify {
        range: BlockRange,
        byte_check: bool,
    },
    /// WRITE AND VERIFY: a durable write, then (with `byte_check`) a compare with the medium.
    WriteAndVerify {
        range: BlockRange,
        byte_check: bool,
    },
    /// COMPARE AND WRITE: the data-out buffer holds `blocks` blocks to compare, then `blocks`
    /// blocks to write if they all matched.
    CompareAndWrite {
        range: BlockRange,
        fua: bool,
    },
    /// ORWRITE(16): each block becomes the bitwise OR of itself and the data-out block.
    OrWrite {
        range: BlockRange,
        fua: bool,
    },
    ReadDefectData(ReadDefectData),
    ReportSupportedOpcodes(ReportOpcodes),
    PersistentReserveIn {
        service_action: u8,
        allocation_length: u16,
    },
    PersistentReserveOut(ReserveOut),
    /// RESERVE(6) and RELEASE(6) (SPC-2 §7.21, §7.16): the reservation of the whole unit.
    Reserve,
    Release,
    PreFetch(BlockRange),
    SynchronizeCache(BlockRange),
    WriteSame(WriteSame),
    Unmap {
        parameter_list_length: u16,
    },
    ReportLuns {
        select_report: u8,
        allocation_length: u32,
    },
    GetLbaStatus(GetLbaStatus),
}

fn u16_at(c: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([c[at], c[at + 1]])
}
fn u32_at(c: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]])
}
fn u64_at(c: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&c[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Length of a CDB by its group code (SPC-4 §4.2.5.1), or `None` for the variable-length CDB.
fn fixed_len(opcode: u8) -> Option<usize> {
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
fn no_protection(cdb: &[u8]) -> Result<(), Sense> {
    if cdb[1] & 0xe0 != 0 {
        return Err(Sense::invalid_bit_in_cdb(1, 7));
    }
    Ok(())
}

/// Parses a CDB. `cdb` is at least 16 bytes when it came from a SCSI Command BHS; shorter input
/// is padded with zeros so the parser is total.
pub fn parse(cdb: &[u8]) -> Result<Command, Sense> {
    let mut padded = [0u8; 32];
    let n = cdb.len().min(32);
    padded[..n].copy_from_slice(&cdb[..n]);
    let c = &padded;
    let opcode = c[0];
    if let Some(len) = fixed_len(opcode)
        && cdb.len() < len
    {
        return Err(Sense::invalid_field_in_cdb(0));
    }
    Ok(match opcode {
        op::TEST_UNIT_READY => Command::TestUnitReady,
        op::REQUEST_SENSE => Command::RequestSense {
            descriptor_format: c[1] & 1 != 0,
            allocation_length: c[4],
        },
        op::INQUIRY => {
            let evpd = c[1] & 1 != 0;
            if c[1] & 0xfe != 0 {
                return Err(Sense::invalid_field_in_cdb(1));
            }
            if !evpd && c[2] != 0 {
                return Err(Sense::invalid_field_in_cdb(2));
            }
            Command::Inquiry {
                evpd,
                page: c[2],
                allocation_length: u16_at(c, 3),
            }
        }
        op::MODE_SENSE_6 | op::MODE_SENSE_10 => {
            let ten = opcode == op::MODE_SENSE_10;
            Command::ModeSense(ModeSense {
                ten_byte: ten,
                disable_block_descriptors: c[1] & 0x08 != 0,
                long_lba_accepted: ten && c[1] & 0x10 != 0,
                page_control: c[2] >> 6,
                page: c[2] & 0x3f,
                subpage: c[3],
                allocation_length: if ten { u16_at(c, 7) } else { c[4] as u16 },
            })
        }
        op::READ_CAPACITY_10 => Command::ReadCapacity10,
        op::READ_6 | op::WRITE_6 => {
            let lba = (u32_at(c, 0) & 0x001f_ffff) as u64;
            // Transfer length 0 means 256 blocks in the 6-byte form (SBC-4 §5.14).
            let blocks = if c[4] == 0 { 256 } else { c[4] as u64 };
            let range = BlockRange { lba, blocks };
            if opcode == op::READ_6 {
                Command::Read(range)
            } else {
                Command::Write { range, fua: false }
            }
        }
        op::RESERVE_6 | op::RELEASE_6 => {
            // Third-party reservations and extents (SPC-2 §7.21.1) are not supported.
            if c[1] & 0x1f != 0 {
                return Err(Sense::invalid_field_in_cdb(1));
            }
            if opcode == op::RESERVE_6 {
                Command::Reserve
            } else {
                Command::Release
            }
        }
        op::READ_DEFECT_DATA_10 => Command::ReadDefectData(ReadDefectData {
            twelve_byte: false,
            primary_list: c[2] & 0x10 != 0,
            grown_list: c[2] & 0x08 != 0,
            format: c[2] & 0x07,
            allocation_length: u16_at(c, 7) as u32,
        }),
        op::READ_DEFECT_DATA_12 => Command::ReadDefectData(ReadDefectData {
            twelve_byte: true,
            primary_list: c[1] & 0x10 != 0,
            grown_list: c[1] & 0x08 != 0,
            format: c[1] & 0x07,
            allocation_length: u32_at(c, 6),
        }),
        op::PERSISTENT_RESERVE_IN => Command::PersistentReserveIn {
            service_action: c[1] & 0x1f,
            allocation_length: u16_at(c, 7),
        },
        op::PERSISTENT_RESERVE_OUT => Command::PersistentReserveOut(ReserveOut {
            service_action: c[1] & 0x1f,
            scope: c[2] >> 4,
            kind: c[2] & 0x0f,
            parameter_list_length: u32_at(c, 5),
        }),
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
        op::COMPARE_AND_WRITE => {
            no_protection(c)?;
            Command::CompareAndWrite {
                range: BlockRange {
                    lba: u64_at(c, 2),
                    blocks: c[13] as u64,
                },
                fua: c[1] & 0x08 != 0,
            }
        }
        op::ORWRITE_16 => {
            no_protection(c)?;
            Command::OrWrite {
                range: BlockRange {
                    lba: u64_at(c, 2),
                    blocks: u32_at(c, 10) as u64,
                },
                fua: c[1] & 0x08 != 0,
            }
        }
        op::READ_10
        | op::WRITE_10
        | op::WRITE_AND_VERIFY_10
        | op::VERIFY_10
        | op::PRE_FETCH_10
        | op::SYNCHRONIZE_CACHE_10 => {
            let r = BlockRange {
                lba: u32_at(c, 2) as u64,
                blocks: u16_at(c, 7) as u64,
            };
            block_command(opcode, c, r)?
        }
        op::READ_12 | op::WRITE_12 | op::WRITE_AND_VERIFY_12 | op::VERIFY_12 => {
            let r = BlockRange {
                lba: u32_at(c, 2) as u64,
                blocks: u32_at(c, 6) as u64,
            };
            block_command(opcode, c, r)?
        }
        op::READ_16
        | op::WRITE_16
        | op::WRITE_AND_VERIFY_16
        | op::VERIFY_16
        | op::PRE_FETCH_16
        | op::SYNCHRONIZE_CACHE_16 => {
            let r = BlockRange {
                lba: u64_at(c, 2),
                blocks: u32_at(c, 10) as u64,
            };
            block_command(opcode, c, r)?
        }
        op::WRITE_SAME_10 | op::WRITE_SAME_16 => {
            let long = opcode == op::WRITE_SAME_16;
            no_protection(c)?;
            let range = if long {
                BlockRange {
                    lba: u64_at(c, 2),
                    blocks: u32_at(c, 10) as u64,
                }
            } else {
                BlockRange {
                    lba: u32_at(c, 2) as u64,
                    blocks: u16_at(c, 7) as u64,
                }
            };
            Command::WriteSame(WriteSame {
                range,
                unmap: c[1] & 0x08 != 0,
                anchor: c[1] & 0x10 != 0,
                no_data_out: long && c[1] & 0x01 != 0,
                long_form: long,
            })
        }
        op::UNMAP => {
            if c[1] & 0x01 != 0 {
                // ANCHOR: we cannot anchor without also mapping.
                return Err(Sense::invalid_bit_in_cdb(1, 0));
            }
            Command::Unmap {
                parameter_list_length: u16_at(c, 7),
            }
        }
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
            if cdb.len() < total {
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
        op::REPORT_LUNS => Command::ReportLuns {
            select_report: c[2],
            allocation_length: u32_at(c, 6),
        },
        _ => return Err(Sense::invalid_opcode()),
    })
}

fn block_command(opcode: u8, c: &[u8], r: BlockRange) -> Result<Command, Sense> {
    Ok(match opcode {
        op::READ_10 | op::READ_12 | op::READ_16 => {
            no_protection(c)?;
            Command::Read(r)
        }
        op::WRITE_10 | op::WRITE_12 | op::WRITE_16 => {
            no_protection(c)?;
            Command::Write {
                range: r,
                fua: c[1] & 0x08 != 0,
            }
        }
        op::WRITE_AND_VERIFY_10 | op::WRITE_AND_VERIFY_12 | op::WRITE_AND_VERIFY_16 => {
            no_protection(c)?;
            // BYTCHK (byte 1 bits 2:1): 0 = verify the medium, 1 = compare; 2 and 3 are
            // reserved for WRITE AND VERIFY (SBC-4 §5.42).
            let bytchk = (c[1] >> 1) & 3;
            if bytchk > 1 {
                return Err(Sense::invalid_bit_in_cdb(1, 2));
            }
            Command::WriteAndVerify {
                range: r,
                byte_check: bytchk == 1,
            }
        }
        op::VERIFY_10 | op::VERIFY_12 | op::VERIFY_16 => {
            no_protection(c)?;
            // BYTCHK (byte 1 bits 2:1): 0 = medium check only, 1 = compare; 2/3 we do not do.
            let bytchk = (c[1] >> 1) & 3;
            if bytchk > 1 {
                return Err(Sense::invalid_bit_in_cdb(1, 2));
            }
            Command::Verify {
                range: r,
                byte_check: bytchk == 1,
            }
        }
        op::PRE_FETCH_10 | op::PRE_FETCH_16 => Command::PreFetch(r),
        _ => Command::SynchronizeCache(r),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    #[test]
    fn unknown_opcode() {
        assert_eq!(parse(&[0xc0; 16]), Err(Sense::invalid_opcode()));
    }

    #[test]
    fn read6_zero_length_means_256() {
        let c = [0x08, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse(&c),
            Ok(Command::Read(BlockRange {
                lba: 5,
                blocks: 256
            }))
        );
    }

    proptest! {
        #[test]
        fn parser_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse(&bytes);
        }
    }
}
