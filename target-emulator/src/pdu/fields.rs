//! The BHS fields that sit at the same offset in most PDUs (RFC 7143 §11.2.1 and the layouts of
//! §11.3–11.19), and the helpers every PDU codec shares.
//!
//! Each offset is named once, here or beside the one PDU family that owns it, and both
//! `to_raw` and `from_raw` use the name: an encoder and its decoder cannot disagree about where
//! a field lies.

use super::bhs::RawPdu;
use super::error::PduError;

/// The reserved tag value meaning "no task" (RFC 7143 §11.18.3).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Byte 1's Final bit, set on the last PDU of a sequence.
pub(super) const F_BIT: u8 = 0x80;
/// Byte 0's Immediate bit, on initiator → target PDUs.
const I_BIT: u8 = 0x40;

/// Byte 2 of a response PDU: the response or reason code.
pub(super) const RESPONSE: usize = 2;
/// Bytes 8–15: the LUN, where the PDU carries one.
pub(super) const LUN: usize = 8;
/// Bytes 16–19: the Initiator Task Tag.
pub(super) const ITT: usize = 16;
/// Bytes 20–23: the Target Transfer Tag (or a PDU-specific field of the same width).
pub(super) const TTT: usize = 20;

/// Bytes 24–31 of an initiator → target PDU: CmdSN and ExpStatSN.
pub(super) const CMD_SN: usize = 24;
pub(super) const EXP_STAT_SN: usize = 28;

/// Bytes 24–35 of a target → initiator PDU: StatSN, ExpCmdSN and MaxCmdSN.
pub(super) const STAT_SN: usize = 24;
pub(super) const EXP_CMD_SN: usize = 28;
pub(super) const MAX_CMD_SN: usize = 32;

/// A BHS with the opcode, the I bit and the byte-1 flags set, everything else zero.
pub(super) fn header(op: u8, immediate: bool, flags: u8) -> RawPdu {
    let mut p = RawPdu::default();
    p.bhs[0] = op | if immediate { I_BIT } else { 0 };
    p.bhs[1] = flags;
    p
}

/// `Ok` when `raw` is the PDU a decoder expects; decoders call it first.
pub(super) fn expect_op(raw: &RawPdu, op: u8) -> Result<(), PduError> {
    if raw.opcode() == op {
        Ok(())
    } else {
        Err(PduError::UnknownOpcode(raw.opcode()))
    }
}

pub(super) fn lun_of(raw: &RawPdu) -> [u8; 8] {
    let mut l = [0u8; 8];
    l.copy_from_slice(&raw.bhs[LUN..LUN + 8]);
    l
}

pub(super) fn put_lun(p: &mut RawPdu, lun: &[u8; 8]) {
    p.bhs[LUN..LUN + 8].copy_from_slice(lun);
}

/// Value generators the round-trip property tests of every PDU family share.
#[cfg(test)]
pub(super) mod strategies {
    use proptest::prelude::*;

    pub fn lun() -> impl Strategy<Value = [u8; 8]> {
        any::<[u8; 8]>()
    }

    pub fn data() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..64)
    }
}
