//! SCSI Command (RFC 7143 §11.3) with its Extended-CDB AHS (§11.2.2.3), and SCSI Response
//! (§11.4) with the residual both it and a final Data-In carry.

use super::bhs::{RawPdu, padded_len};
use super::error::PduError;
use super::fields::{
    CMD_SN, EXP_CMD_SN, EXP_STAT_SN, F_BIT, ITT, MAX_CMD_SN, RESPONSE, STAT_SN, expect_op, header,
    lun_of, put_lun,
};
use super::opcode;

/// AHSType of the Extended CDB AHS.
pub const AHS_TYPE_EXTENDED_CDB: u8 = 1;
/// Longest CDB we accept: the Linux initiator's SCSI_MAX_VARLEN_CDB_SIZE.
pub const MAX_CDB_LEN: usize = 260;

// SCSI Command flags (byte 1) and fields (§11.3).
const READ_BIT: u8 = 0x40;
const WRITE_BIT: u8 = 0x20;
const ATTR_MASK: u8 = 0x07;
const EXPECTED_DATA_LEN: usize = 20;
/// Bytes 32–47: the first 16 bytes of the CDB; the rest travels in an Extended-CDB AHS.
const CDB: usize = 32;
const CDB_IN_BHS: usize = 16;

// SCSI Response fields (§11.4); byte 3 is also the status of a Data-In with the S bit.
pub(super) const STATUS: usize = 3;
const EXP_DATA_SN: usize = 36;
/// Bytes 44–47 of a SCSI Response or a final Data-In: the residual count.
pub(super) const RESIDUAL_COUNT: usize = 44;
const OVERFLOW_BIT: u8 = 0x04;
const UNDERFLOW_BIT: u8 = 0x02;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_flag: bool,
    pub read: bool,
    pub write: bool,
    pub attr: u8,
    pub lun: [u8; 8],
    pub itt: u32,
    pub expected_data_len: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    /// The whole CDB: 16 bytes from the BHS plus any Extended-CDB AHS bytes.
    pub cdb: Vec<u8>,
    /// Immediate data.
    pub data: Vec<u8>,
}

impl ScsiCommand {
    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::SCSI_COMMAND)?;
        let mut cdb = raw.bhs[CDB..CDB + CDB_IN_BHS].to_vec();
        // Walk the AHS list: each is [len u16][type u8][specific u8][len-1 bytes], padded to 4.
        let mut at = 0;
        while at < raw.ahs.len() {
            if raw.ahs.len() - at < 4 {
                return Err(PduError::BadAhs("truncated AHS header"));
            }
            let len = u16::from_be_bytes([raw.ahs[at], raw.ahs[at + 1]]) as usize;
            let ty = raw.ahs[at + 2];
            // AHSLength counts the type-specific byte plus the payload after the 3-byte header.
            let payload_start = at + 4;
            let payload_len = len
                .checked_sub(1)
                .ok_or(PduError::BadAhs("AHSLength of zero"))?;
            let end = payload_start + payload_len;
            if end > raw.ahs.len() {
                return Err(PduError::BadAhs("AHS longer than TotalAHSLength"));
            }
            if ty == AHS_TYPE_EXTENDED_CDB {
                if cdb.len() + payload_len > MAX_CDB_LEN {
                    return Err(PduError::BadAhs("CDB longer than 260 bytes"));
                }
                cdb.extend_from_slice(&raw.ahs[payload_start..end]);
            }
            at += padded_len(3 + len);
        }
        let flags = raw.bhs[1];
        Ok(Self {
            immediate: raw.immediate(),
            final_flag: flags & F_BIT != 0,
            read: flags & READ_BIT != 0,
            write: flags & WRITE_BIT != 0,
            attr: flags & ATTR_MASK,
            lun: lun_of(raw),
            itt: raw.u32_at(ITT),
            expected_data_len: raw.u32_at(EXPECTED_DATA_LEN),
            cmd_sn: raw.u32_at(CMD_SN),
            exp_stat_sn: raw.u32_at(EXP_STAT_SN),
            cdb,
            data: raw.data.clone(),
        })
    }

    pub fn to_raw(&self) -> RawPdu {
        let flags = if self.final_flag { F_BIT } else { 0 }
            | if self.read { READ_BIT } else { 0 }
            | if self.write { WRITE_BIT } else { 0 }
            | (self.attr & ATTR_MASK);
        let mut p = header(opcode::SCSI_COMMAND, self.immediate, flags);
        put_lun(&mut p, &self.lun);
        p.put_u32(ITT, self.itt);
        p.put_u32(EXPECTED_DATA_LEN, self.expected_data_len);
        p.put_u32(CMD_SN, self.cmd_sn);
        p.put_u32(EXP_STAT_SN, self.exp_stat_sn);
        let head = self.cdb.len().min(CDB_IN_BHS);
        p.bhs[CDB..CDB + head].copy_from_slice(&self.cdb[..head]);
        if self.cdb.len() > CDB_IN_BHS {
            let extra = &self.cdb[CDB_IN_BHS..];
            let len = (extra.len() + 1) as u16;
            p.ahs.extend_from_slice(&len.to_be_bytes());
            p.ahs.push(AHS_TYPE_EXTENDED_CDB);
            p.ahs.push(0);
            p.ahs.extend_from_slice(extra);
            p.ahs.resize(padded_len(p.ahs.len()), 0);
        }
        p.data = self.data.clone();
        p.seal()
    }
}

/// Residual flags of a SCSI Response or a final Data-In.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residual {
    #[default]
    None,
    /// The target had more data than the initiator expected (O bit).
    Overflow(u32),
    /// The target moved less data than the initiator expected (U bit).
    Underflow(u32),
}

impl Residual {
    pub(super) fn flags(self) -> u8 {
        match self {
            Residual::None => 0,
            Residual::Overflow(_) => OVERFLOW_BIT,
            Residual::Underflow(_) => UNDERFLOW_BIT,
        }
    }

    pub(super) fn count(self) -> u32 {
        match self {
            Residual::None => 0,
            Residual::Overflow(n) | Residual::Underflow(n) => n,
        }
    }

    pub(super) fn from_flags(flags: u8, count: u32) -> Self {
        if flags & OVERFLOW_BIT != 0 {
            Residual::Overflow(count)
        } else if flags & UNDERFLOW_BIT != 0 {
            Residual::Underflow(count)
        } else {
            Residual::None
        }
    }

    /// The residual for a command that moved `actual` bytes where `expected` were announced.
    pub fn between(expected: u32, actual: usize) -> Self {
        let actual = actual.min(u32::MAX as usize) as u32;
        match actual.cmp(&expected) {
            std::cmp::Ordering::Equal => Residual::None,
            std::cmp::Ordering::Less => Residual::Underflow(expected - actual),
            std::cmp::Ordering::Greater => Residual::Overflow(actual - expected),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScsiResponse {
    pub residual: Residual,
    /// 0x00 command completed at target, 0x01 target failure.
    pub response: u8,
    pub status: u8,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub exp_data_sn: u32,
    /// Sense bytes; carried as SenseLength (u16) + sense in the data segment (§11.4.7).
    pub sense: Vec<u8>,
}

impl ScsiResponse {
    pub fn to_raw(&self) -> RawPdu {
        let mut p = header(opcode::SCSI_RESPONSE, false, F_BIT | self.residual.flags());
        p.bhs[RESPONSE] = self.response;
        p.bhs[STATUS] = self.status;
        p.put_u32(ITT, self.itt);
        p.put_u32(STAT_SN, self.stat_sn);
        p.put_u32(EXP_CMD_SN, self.exp_cmd_sn);
        p.put_u32(MAX_CMD_SN, self.max_cmd_sn);
        p.put_u32(EXP_DATA_SN, self.exp_data_sn);
        p.put_u32(RESIDUAL_COUNT, self.residual.count());
        if !self.sense.is_empty() {
            p.data
                .extend_from_slice(&(self.sense.len() as u16).to_be_bytes());
            p.data.extend_from_slice(&self.sense);
        }
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::SCSI_RESPONSE)?;
        let sense = if raw.data.len() >= 2 {
            let n = u16::from_be_bytes([raw.data[0], raw.data[1]]) as usize;
            raw.data
                .get(2..2 + n)
                .map(|s| s.to_vec())
                .ok_or(PduError::Malformed {
                    pdu: "SCSI Response",
                    reason: "SenseLength exceeds the data segment",
                })?
        } else {
            Vec::new()
        };
        Ok(Self {
            residual: Residual::from_flags(raw.bhs[1], raw.u32_at(RESIDUAL_COUNT)),
            response: raw.bhs[RESPONSE],
            status: raw.bhs[STATUS],
            itt: raw.u32_at(ITT),
            stat_sn: raw.u32_at(STAT_SN),
            exp_cmd_sn: raw.u32_at(EXP_CMD_SN),
            max_cmd_sn: raw.u32_at(MAX_CMD_SN),
            exp_data_sn: raw.u32_at(EXP_DATA_SN),
            sense,
        })
    }
}

/// Residuals of every kind, for the round-trip tests of the PDUs that carry one.
#[cfg(test)]
pub(super) fn residual_strategy() -> impl proptest::strategy::Strategy<Value = Residual> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Residual::None),
        any::<u32>().prop_map(Residual::Overflow),
        any::<u32>().prop_map(Residual::Underflow),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::fields::strategies::{data, lun};
    use super::*;
    use proptest::prelude::*;

    /// A 32-byte GET LBA STATUS(32) CDB travels as 16 BHS bytes + a 20-byte Extended-CDB AHS
    /// (research/scsi-facts.md §1.4: AHSLength 17, TotalAHSLength 5 words).
    #[test]
    fn extended_cdb_ahs_layout_for_32_byte_cdb() {
        let mut cdb = vec![0u8; 32];
        cdb[0] = 0x7f;
        cdb[7] = 0x18;
        cdb[31] = 0xaa;
        let cmd = ScsiCommand {
            immediate: false,
            final_flag: true,
            read: true,
            write: false,
            attr: 1,
            lun: [0; 8],
            itt: 9,
            expected_data_len: 4096,
            cmd_sn: 1,
            exp_stat_sn: 1,
            cdb: cdb.clone(),
            data: vec![],
        };
        let raw = cmd.to_raw();
        assert_eq!(raw.bhs[4], 5);
        assert_eq!(&raw.ahs[..4], &[0, 17, 1, 0]);
        assert_eq!(raw.ahs.len(), 20);
        assert_eq!(ScsiCommand::from_raw(&raw).unwrap().cdb, cdb);
    }

    proptest! {
        #[test]
        fn scsi_command_round_trip(immediate: bool, final_flag: bool, read: bool, write: bool,
            attr in 0u8..8, lun in lun(), itt: u32, edtl: u32, cmd_sn: u32, exp: u32,
            cdb in proptest::collection::vec(any::<u8>(), 16..=MAX_CDB_LEN), data in data()) {
            let c = ScsiCommand { immediate, final_flag, read, write, attr, lun, itt,
                expected_data_len: edtl, cmd_sn, exp_stat_sn: exp, cdb, data };
            prop_assert_eq!(ScsiCommand::from_raw(&c.to_raw()).unwrap(), c);
        }

        #[test]
        fn scsi_response_round_trip(residual in residual_strategy(), response: u8, status: u8,
            itt: u32, a: u32, b: u32, c: u32, d: u32, sense in data()) {
            let r = ScsiResponse { residual, response, status, itt, stat_sn: a, exp_cmd_sn: b,
                max_cmd_sn: c, exp_data_sn: d, sense };
            prop_assert_eq!(ScsiResponse::from_raw(&r.to_raw()).unwrap(), r);
        }
    }
}
