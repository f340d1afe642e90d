//! SPC-4 commands every device type has: TEST UNIT READY, REQUEST SENSE, INQUIRY, MODE
//! SENSE(6/10), REPORT LUNS, PERSISTENT RESERVE IN/OUT, and RESERVE(6)/RELEASE(6) (SPC-2).

use super::super::sense::Sense;
use super::codes::op;
use super::command::{Command, ModeSense, ReserveOut};
use super::fields::{Padded, u16_at, u32_at};

/// Parses the SPC command with `opcode`.
pub(super) fn parse(opcode: u8, c: &Padded) -> Result<Command, Sense> {
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
        op::REPORT_LUNS => Command::ReportLuns {
            select_report: c[2],
            allocation_length: u32_at(c, 6),
        },
        _ => return Err(Sense::invalid_opcode()),
    })
}
