//! SBC-4 thin-provisioning commands: WRITE SAME(10/16) and UNMAP.

use super::super::sense::Sense;
use super::codes::op;
use super::command::{BlockRange, Command, WriteSame};
use super::fields::{Padded, no_protection, u16_at, u32_at, u64_at};

/// Parses the provisioning command with `opcode`.
pub(super) fn parse(opcode: u8, c: &Padded) -> Result<Command, Sense> {
    Ok(match opcode {
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
        _ => return Err(Sense::invalid_opcode()),
    })
}
