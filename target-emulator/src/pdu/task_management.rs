//! Task Management Function Request (RFC 7143 §11.5) and Response (§11.6).

use super::bhs::RawPdu;
use super::error::PduError;
use super::fields::{
    CMD_SN, EXP_CMD_SN, EXP_STAT_SN, F_BIT, ITT, MAX_CMD_SN, RESPONSE, STAT_SN, TTT, expect_op,
    header, lun_of, put_lun,
};
use super::opcode;

/// Byte 1 of a request below the F bit: the function code.
const FUNCTION_MASK: u8 = 0x7f;
/// Bytes 20–23 of a request: the tag of the task to act on (where other PDUs hold a TTT).
const REFERENCED_TASK_TAG: usize = TTT;
/// Bytes 32–39 of a request: RefCmdSN and ExpDataSN.
const REF_CMD_SN: usize = 32;
const EXP_DATA_SN: usize = 36;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskMgmtRequest {
    pub immediate: bool,
    pub function: u8,
    pub lun: [u8; 8],
    pub itt: u32,
    pub referenced_task_tag: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub ref_cmd_sn: u32,
    pub exp_data_sn: u32,
}

impl TaskMgmtRequest {
    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::TASK_MGMT_REQUEST)?;
        Ok(Self {
            immediate: raw.immediate(),
            function: raw.bhs[1] & FUNCTION_MASK,
            lun: lun_of(raw),
            itt: raw.u32_at(ITT),
            referenced_task_tag: raw.u32_at(REFERENCED_TASK_TAG),
            cmd_sn: raw.u32_at(CMD_SN),
            exp_stat_sn: raw.u32_at(EXP_STAT_SN),
            ref_cmd_sn: raw.u32_at(REF_CMD_SN),
            exp_data_sn: raw.u32_at(EXP_DATA_SN),
        })
    }

    pub fn to_raw(&self) -> RawPdu {
        let mut p = header(
            opcode::TASK_MGMT_REQUEST,
            self.immediate,
            F_BIT | (self.function & FUNCTION_MASK),
        );
        put_lun(&mut p, &self.lun);
        p.put_u32(ITT, self.itt);
        p.put_u32(REFERENCED_TASK_TAG, self.referenced_task_tag);
        p.put_u32(CMD_SN, self.cmd_sn);
        p.put_u32(EXP_STAT_SN, self.exp_stat_sn);
        p.put_u32(REF_CMD_SN, self.ref_cmd_sn);
        p.put_u32(EXP_DATA_SN, self.exp_data_sn);
        p.seal()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskMgmtResponse {
    pub response: u8,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

impl TaskMgmtResponse {
    pub fn to_raw(&self) -> RawPdu {
        let mut p = header(opcode::TASK_MGMT_RESPONSE, false, F_BIT);
        p.bhs[RESPONSE] = self.response;
        p.put_u32(ITT, self.itt);
        p.put_u32(STAT_SN, self.stat_sn);
        p.put_u32(EXP_CMD_SN, self.exp_cmd_sn);
        p.put_u32(MAX_CMD_SN, self.max_cmd_sn);
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::TASK_MGMT_RESPONSE)?;
        Ok(Self {
            response: raw.bhs[RESPONSE],
            itt: raw.u32_at(ITT),
            stat_sn: raw.u32_at(STAT_SN),
            exp_cmd_sn: raw.u32_at(EXP_CMD_SN),
            max_cmd_sn: raw.u32_at(MAX_CMD_SN),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fields::strategies::lun;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn task_management_round_trip(immediate: bool, function in 0u8..128, itt: u32,
            a: u32, b: u32, c: u32, d: u32, lun in lun(), resp: u8) {
            let t = TaskMgmtRequest { immediate, function, lun, itt,
                referenced_task_tag: d, cmd_sn: a, exp_stat_sn: b, ref_cmd_sn: c, exp_data_sn: d };
            prop_assert_eq!(TaskMgmtRequest::from_raw(&t.to_raw()).unwrap(), t);
            let u = TaskMgmtResponse { response: resp, itt, stat_sn: a, exp_cmd_sn: b, max_cmd_sn: c };
            prop_assert_eq!(TaskMgmtResponse::from_raw(&u.to_raw()).unwrap(), u);
        }
    }
}
