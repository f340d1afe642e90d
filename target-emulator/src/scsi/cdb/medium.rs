//! SBC-4 commands that describe the medium instead of moving its data: READ CAPACITY(10) and
//! READ DEFECT DATA(10/12). READ CAPACITY(16) is a service action ([`super::by_service_action`]).

use super::super::sense::Sense;
use super::codes::op;
use super::command::{Command, ReadDefectData};
use super::fields::{Padded, u16_at, u32_at};

/// Parses the medium description command with `opcode`.
pub(super) fn parse(opcode: u8, c: &Padded) -> Result<Command, Sense> {
    Ok(match opcode {
        op::READ_CAPACITY_10 => Command::ReadCapacity10,
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
        _ => return Err(Sense::invalid_opcode()),
    })
}
