//! The data-transfer PDUs: SCSI Data-In (RFC 7143 §11.7), SCSI Data-Out (§11.7) and Ready To
//! Transfer (§11.8).

use super::bhs::RawPdu;
use super::error::PduError;
use super::fields::{
    EXP_CMD_SN, EXP_STAT_SN, F_BIT, ITT, MAX_CMD_SN, RESERVED_TAG, STAT_SN, TTT, expect_op, header,
    lun_of, put_lun,
};
use super::opcode;
use super::scsi::{RESIDUAL_COUNT, Residual, STATUS};

/// Byte 1 of a Data-In: the S bit, status rides in this PDU.
const STATUS_BIT: u8 = 0x01;
/// Bytes 36–39: DataSN of a Data-In or Data-Out, R2TSN of an R2T.
const DATA_SN: usize = 36;
/// Bytes 40–43: where this PDU's data lies in the command's buffer.
const BUFFER_OFFSET: usize = 40;
/// Bytes 44–47 of an R2T: the Desired Data Transfer Length.
const DESIRED_LEN: usize = 44;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataIn {
    pub final_flag: bool,
    /// Status rides in this PDU (S bit): only on the last one and only for GOOD.
    pub status: Option<u8>,
    pub residual: Residual,
    pub lun: [u8; 8],
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
    pub data: Vec<u8>,
}

impl DataIn {
    pub fn to_raw(&self) -> RawPdu {
        let mut flags = if self.final_flag { F_BIT } else { 0 };
        if self.status.is_some() {
            flags |= STATUS_BIT | self.residual.flags();
        }
        let mut p = header(opcode::DATA_IN, false, flags);
        p.bhs[STATUS] = self.status.unwrap_or(0);
        put_lun(&mut p, &self.lun);
        p.put_u32(ITT, self.itt);
        p.put_u32(TTT, RESERVED_TAG);
        if self.status.is_some() {
            p.put_u32(STAT_SN, self.stat_sn);
            p.put_u32(RESIDUAL_COUNT, self.residual.count());
        }
        p.put_u32(EXP_CMD_SN, self.exp_cmd_sn);
        p.put_u32(MAX_CMD_SN, self.max_cmd_sn);
        p.put_u32(DATA_SN, self.data_sn);
        p.put_u32(BUFFER_OFFSET, self.buffer_offset);
        p.data = self.data.clone();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::DATA_IN)?;
        let flags = raw.bhs[1];
        let has_status = flags & STATUS_BIT != 0;
        Ok(Self {
            final_flag: flags & F_BIT != 0,
            status: has_status.then_some(raw.bhs[STATUS]),
            residual: if has_status {
                Residual::from_flags(flags, raw.u32_at(RESIDUAL_COUNT))
            } else {
                Residual::None
            },
            lun: lun_of(raw),
            itt: raw.u32_at(ITT),
            stat_sn: if has_status { raw.u32_at(STAT_SN) } else { 0 },
            exp_cmd_sn: raw.u32_at(EXP_CMD_SN),
            max_cmd_sn: raw.u32_at(MAX_CMD_SN),
            data_sn: raw.u32_at(DATA_SN),
            buffer_offset: raw.u32_at(BUFFER_OFFSET),
            data: raw.data.clone(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataOut {
    pub final_flag: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub exp_stat_sn: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
    pub data: Vec<u8>,
}

impl DataOut {
    pub fn to_raw(&self) -> RawPdu {
        let mut p = header(
            opcode::DATA_OUT,
            false,
            if self.final_flag { F_BIT } else { 0 },
        );
        put_lun(&mut p, &self.lun);
        p.put_u32(ITT, self.itt);
        p.put_u32(TTT, self.ttt);
        p.put_u32(EXP_STAT_SN, self.exp_stat_sn);
        p.put_u32(DATA_SN, self.data_sn);
        p.put_u32(BUFFER_OFFSET, self.buffer_offset);
        p.data = self.data.clone();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::DATA_OUT)?;
        Ok(Self {
            final_flag: raw.bhs[1] & F_BIT != 0,
            lun: lun_of(raw),
            itt: raw.u32_at(ITT),
            ttt: raw.u32_at(TTT),
            exp_stat_sn: raw.u32_at(EXP_STAT_SN),
            data_sn: raw.u32_at(DATA_SN),
            buffer_offset: raw.u32_at(BUFFER_OFFSET),
            data: raw.data.clone(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadyToTransfer {
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub r2t_sn: u32,
    pub buffer_offset: u32,
    pub desired_len: u32,
}

impl ReadyToTransfer {
    pub fn to_raw(&self) -> RawPdu {
        let mut p = header(opcode::R2T, false, F_BIT);
        put_lun(&mut p, &self.lun);
        p.put_u32(ITT, self.itt);
        p.put_u32(TTT, self.ttt);
        p.put_u32(STAT_SN, self.stat_sn);
        p.put_u32(EXP_CMD_SN, self.exp_cmd_sn);
        p.put_u32(MAX_CMD_SN, self.max_cmd_sn);
        p.put_u32(DATA_SN, self.r2t_sn);
        p.put_u32(BUFFER_OFFSET, self.buffer_offset);
        p.put_u32(DESIRED_LEN, self.desired_len);
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::R2T)?;
        Ok(Self {
            lun: lun_of(raw),
            itt: raw.u32_at(ITT),
            ttt: raw.u32_at(TTT),
            stat_sn: raw.u32_at(STAT_SN),
            exp_cmd_sn: raw.u32_at(EXP_CMD_SN),
            max_cmd_sn: raw.u32_at(MAX_CMD_SN),
            r2t_sn: raw.u32_at(DATA_SN),
            buffer_offset: raw.u32_at(BUFFER_OFFSET),
            desired_len: raw.u32_at(DESIRED_LEN),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fields::strategies::{data, lun};
    use super::super::scsi::residual_strategy;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn data_in_round_trip(final_flag: bool, status: Option<u8>,
            residual in residual_strategy(), lun in lun(), itt: u32, a: u32, b: u32, c: u32,
            d: u32, e: u32, data in data()) {
            let residual = if status.is_some() { residual } else { Residual::None };
            let stat_sn = if status.is_some() { a } else { 0 };
            let x = DataIn { final_flag, status, residual, lun, itt, stat_sn, exp_cmd_sn: b,
                max_cmd_sn: c, data_sn: d, buffer_offset: e, data };
            prop_assert_eq!(DataIn::from_raw(&x.to_raw()).unwrap(), x);
        }

        #[test]
        fn data_out_round_trip(final_flag: bool, lun in lun(), itt: u32, ttt: u32, a: u32,
            b: u32, c: u32, data in data()) {
            let x = DataOut { final_flag, lun, itt, ttt, exp_stat_sn: a, data_sn: b,
                buffer_offset: c, data };
            prop_assert_eq!(DataOut::from_raw(&x.to_raw()).unwrap(), x);
        }

        #[test]
        fn r2t_round_trip(lun in lun(), itt: u32, ttt: u32, a: u32, b: u32, c: u32, d: u32,
            e: u32, f: u32) {
            let x = ReadyToTransfer { lun, itt, ttt, stat_sn: a, exp_cmd_sn: b, max_cmd_sn: c,
                r2t_sn: d, buffer_offset: e, desired_len: f };
            prop_assert_eq!(ReadyToTransfer::from_raw(&x.to_raw()).unwrap(), x);
        }
    }
}
