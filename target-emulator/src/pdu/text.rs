//! Text Request (RFC 7143 §11.10) and Text Response (§11.11). Their data segments are
//! `key=value` pairs, parsed by [`super::keys`].

use super::bhs::RawPdu;
use super::error::PduError;
use super::fields::{
    CMD_SN, EXP_CMD_SN, EXP_STAT_SN, F_BIT, ITT, MAX_CMD_SN, STAT_SN, TTT, expect_op, header,
    lun_of, put_lun,
};
use super::opcode;

/// Byte 1's C bit: more text follows in the next PDU.
const CONTINUE_BIT: u8 = 0x40;

fn text_flags(final_flag: bool, cont: bool) -> u8 {
    (if final_flag { F_BIT } else { 0 }) | if cont { CONTINUE_BIT } else { 0 }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_flag: bool,
    pub cont: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub data: Vec<u8>,
}

impl TextRequest {
    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::TEXT_REQUEST)?;
        Ok(Self {
            immediate: raw.immediate(),
            final_flag: raw.bhs[1] & F_BIT != 0,
            cont: raw.bhs[1] & CONTINUE_BIT != 0,
            lun: lun_of(raw),
            itt: raw.u32_at(ITT),
            ttt: raw.u32_at(TTT),
            cmd_sn: raw.u32_at(CMD_SN),
            exp_stat_sn: raw.u32_at(EXP_STAT_SN),
            data: raw.data.clone(),
        })
    }

    pub fn to_raw(&self) -> RawPdu {
        let flags = text_flags(self.final_flag, self.cont);
        let mut p = header(opcode::TEXT_REQUEST, self.immediate, flags);
        put_lun(&mut p, &self.lun);
        p.put_u32(ITT, self.itt);
        p.put_u32(TTT, self.ttt);
        p.put_u32(CMD_SN, self.cmd_sn);
        p.put_u32(EXP_STAT_SN, self.exp_stat_sn);
        p.data = self.data.clone();
        p.seal()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextResponse {
    pub final_flag: bool,
    pub cont: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub data: Vec<u8>,
}

impl TextResponse {
    pub fn to_raw(&self) -> RawPdu {
        let flags = text_flags(self.final_flag, self.cont);
        let mut p = header(opcode::TEXT_RESPONSE, false, flags);
        put_lun(&mut p, &self.lun);
        p.put_u32(ITT, self.itt);
        p.put_u32(TTT, self.ttt);
        p.put_u32(STAT_SN, self.stat_sn);
        p.put_u32(EXP_CMD_SN, self.exp_cmd_sn);
        p.put_u32(MAX_CMD_SN, self.max_cmd_sn);
        p.data = self.data.clone();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::TEXT_RESPONSE)?;
        Ok(Self {
            final_flag: raw.bhs[1] & F_BIT != 0,
            cont: raw.bhs[1] & CONTINUE_BIT != 0,
            lun: lun_of(raw),
            itt: raw.u32_at(ITT),
            ttt: raw.u32_at(TTT),
            stat_sn: raw.u32_at(STAT_SN),
            exp_cmd_sn: raw.u32_at(EXP_CMD_SN),
            max_cmd_sn: raw.u32_at(MAX_CMD_SN),
            data: raw.data.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fields::strategies::{data, lun};
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_round_trip(immediate: bool, final_flag: bool, cont: bool, lun in lun(), itt: u32,
            ttt: u32, a: u32, b: u32, c: u32, data in data()) {
            let q = TextRequest { immediate, final_flag, cont, lun, itt, ttt, cmd_sn: a,
                exp_stat_sn: b, data: data.clone() };
            prop_assert_eq!(TextRequest::from_raw(&q.to_raw()).unwrap(), q);
            let r = TextResponse { final_flag, cont, lun, itt, ttt, stat_sn: a, exp_cmd_sn: b,
                max_cmd_sn: c, data };
            prop_assert_eq!(TextResponse::from_raw(&r.to_raw()).unwrap(), r);
        }
    }
}
