//! NOP-Out (RFC 7143 §11.18) and NOP-In (§11.19): pings either way, and the answers to them.

use super::bhs::RawPdu;
use super::error::PduError;
use super::fields::{
    CMD_SN, EXP_CMD_SN, EXP_STAT_SN, F_BIT, ITT, MAX_CMD_SN, STAT_SN, TTT, expect_op, header,
    lun_of, put_lun,
};
use super::opcode;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub data: Vec<u8>,
}

impl NopOut {
    pub fn to_raw(&self) -> RawPdu {
        let mut p = header(opcode::NOP_OUT, self.immediate, F_BIT);
        put_lun(&mut p, &self.lun);
        p.put_u32(ITT, self.itt);
        p.put_u32(TTT, self.ttt);
        p.put_u32(CMD_SN, self.cmd_sn);
        p.put_u32(EXP_STAT_SN, self.exp_stat_sn);
        p.data = self.data.clone();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::NOP_OUT)?;
        Ok(Self {
            immediate: raw.immediate(),
            lun: lun_of(raw),
            itt: raw.u32_at(ITT),
            ttt: raw.u32_at(TTT),
            cmd_sn: raw.u32_at(CMD_SN),
            exp_stat_sn: raw.u32_at(EXP_STAT_SN),
            data: raw.data.clone(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NopIn {
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub data: Vec<u8>,
}

impl NopIn {
    pub fn to_raw(&self) -> RawPdu {
        let mut p = header(opcode::NOP_IN, false, F_BIT);
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
        expect_op(raw, opcode::NOP_IN)?;
        Ok(Self {
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
        fn nop_round_trip(immediate: bool, lun in lun(), itt: u32, ttt: u32, a: u32, b: u32,
            c: u32, data in data()) {
            let o = NopOut { immediate, lun, itt, ttt, cmd_sn: a, exp_stat_sn: b, data: data.clone() };
            prop_assert_eq!(NopOut::from_raw(&o.to_raw()).unwrap(), o);
            let i = NopIn { lun, itt, ttt, stat_sn: a, exp_cmd_sn: b, max_cmd_sn: c, data };
            prop_assert_eq!(NopIn::from_raw(&i.to_raw()).unwrap(), i);
        }
    }
}
