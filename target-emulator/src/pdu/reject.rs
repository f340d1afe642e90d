//! Reject (RFC 7143 §11.17): the target's answer to a PDU it cannot accept.

use super::bhs::{BHS_LEN, RawPdu};
use super::error::PduError;
use super::fields::{
    EXP_CMD_SN, F_BIT, ITT, MAX_CMD_SN, RESERVED_TAG, RESPONSE, STAT_SN, expect_op, header,
};
use super::opcode;

/// Reject reasons (RFC 7143 §11.17.1).
pub mod reject_reason {
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    pub const SNACK_REJECT: u8 = 0x03;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    pub const INVALID_PDU_FIELD: u8 = 0x09;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: u8,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    /// The header of the rejected PDU, returned as the data segment.
    pub rejected_bhs: [u8; BHS_LEN],
}

impl Reject {
    pub fn to_raw(&self) -> RawPdu {
        let mut p = header(opcode::REJECT, false, F_BIT);
        p.bhs[RESPONSE] = self.reason;
        p.put_u32(ITT, RESERVED_TAG);
        p.put_u32(STAT_SN, self.stat_sn);
        p.put_u32(EXP_CMD_SN, self.exp_cmd_sn);
        p.put_u32(MAX_CMD_SN, self.max_cmd_sn);
        p.data = self.rejected_bhs.to_vec();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::REJECT)?;
        let mut rejected_bhs = [0u8; BHS_LEN];
        let n = raw.data.len().min(BHS_LEN);
        rejected_bhs[..n].copy_from_slice(&raw.data[..n]);
        Ok(Self {
            reason: raw.bhs[RESPONSE],
            stat_sn: raw.u32_at(STAT_SN),
            exp_cmd_sn: raw.u32_at(EXP_CMD_SN),
            max_cmd_sn: raw.u32_at(MAX_CMD_SN),
            rejected_bhs,
        })
    }
}
