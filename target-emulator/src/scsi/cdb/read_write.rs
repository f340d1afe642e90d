//! SBC-4 commands that move or check a block range: READ, WRITE, VERIFY, WRITE AND VERIFY in
//! their 6/10/12/16-byte forms, COMPARE AND WRITE, ORWRITE(16), PRE-FETCH and SYNCHRONIZE CACHE.

use super::super::sense::Sense;
use super::codes::op;
use super::command::{BlockRange, Command};
use super::fields::{Padded, no_protection, u16_at, u32_at, u64_at};

/// Parses the block-range command with `opcode`.
pub(super) fn parse(opcode: u8, c: &Padded) -> Result<Command, Sense> {
    Ok(match opcode {
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
        _ => return Err(Sense::invalid_opcode()),
    })
}

/// The command a 10/12/16-byte block opcode names, over the range its form encodes.
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
    use super::super::parse;
    use super::*;

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
}
