//! Logout Request (RFC 7143 §11.14) and Logout Response (§11.15).

use super::bhs::RawPdu;
use super::error::PduError;
use super::fields::{
    CMD_SN, EXP_CMD_SN, EXP_STAT_SN, F_BIT, ITT, MAX_CMD_SN, RESPONSE, STAT_SN, TTT, expect_op,
    header,
};
use super::opcode;

/// Byte 1 of a Logout Request below the F bit: the reason code.
const REASON_MASK: u8 = 0x7f;
/// Bytes 20–21 of a Logout Request: the CID to close.
const CID: usize = TTT;
/// Bytes 40–43 of a Logout Response: Time2Wait and Time2Retain.
const TIME2WAIT: usize = 40;
const TIME2RETAIN: usize = 42;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogoutRequest {
    pub immediate: bool,
    /// 0 close the session, 1 close the connection, 2 remove the connection for recovery.
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

impl LogoutRequest {
    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::LOGOUT_REQUEST)?;
        Ok(Self {
            immediate: raw.immediate(),
            reason: raw.bhs[1] & REASON_MASK,
            itt: raw.u32_at(ITT),
            cid: raw.u16_at(CID),
            cmd_sn: raw.u32_at(CMD_SN),
            exp_stat_sn: raw.u32_at(EXP_STAT_SN),
        })
    }

    pub fn to_raw(&self) -> RawPdu {
        let mut p = header(
            opcode::LOGOUT_REQUEST,
            self.immediate,
            F_BIT | (self.reason & REASON_MASK),
        );
        p.put_u32(ITT, self.itt);
        p.put_u16(CID, self.cid);
        p.put_u32(CMD_SN, self.cmd_sn);
        p.put_u32(EXP_STAT_SN, self.exp_stat_sn);
        p.seal()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogoutResponse {
    /// 0 closed successfully, 1 CID not found, 2 recovery not supported, 3 cleanup failed.
    pub response: u8,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub time2wait: u16,
    pub time2retain: u16,
}

impl LogoutResponse {
    pub fn to_raw(&self) -> RawPdu {
        let mut p = header(opcode::LOGOUT_RESPONSE, false, F_BIT);
        p.bhs[RESPONSE] = self.response;
        p.put_u32(ITT, self.itt);
        p.put_u32(STAT_SN, self.stat_sn);
        p.put_u32(EXP_CMD_SN, self.exp_cmd_sn);
        p.put_u32(MAX_CMD_SN, self.max_cmd_sn);
        p.put_u16(TIME2WAIT, self.time2wait);
        p.put_u16(TIME2RETAIN, self.time2retain);
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::LOGOUT_RESPONSE)?;
        Ok(Self {
            response: raw.bhs[RESPONSE],
            itt: raw.u32_at(ITT),
            stat_sn: raw.u32_at(STAT_SN),
            exp_cmd_sn: raw.u32_at(EXP_CMD_SN),
            max_cmd_sn: raw.u32_at(MAX_CMD_SN),
            time2wait: raw.u16_at(TIME2WAIT),
            time2retain: raw.u16_at(TIME2RETAIN),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn logout_round_trip(immediate: bool, reason in 0u8..128, itt: u32, cid: u16,
            a: u32, b: u32, c: u32, resp: u8, t2w: u16, t2r: u16) {
            let q = LogoutRequest { immediate, reason, itt, cid, cmd_sn: a, exp_stat_sn: b };
            prop_assert_eq!(LogoutRequest::from_raw(&q.to_raw()).unwrap(), q);
            let r = LogoutResponse { response: resp, itt, stat_sn: a, exp_cmd_sn: b,
                max_cmd_sn: c, time2wait: t2w, time2retain: t2r };
            prop_assert_eq!(LogoutResponse::from_raw(&r.to_raw()).unwrap(), r);
        }
    }
}
