//! Typed PDUs (RFC 7143 §11.x). Each has `from_raw` (total: never panics) and `to_raw`, and
//! `from_raw(to_raw(x)) == x` is property-tested below.

use super::{BHS_LEN, PduError, RawPdu};

/// Opcodes, initiator → target (RFC 7143 §11.2.1.2).
pub mod opcode {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_COMMAND: u8 = 0x01;
    pub const TASK_MGMT_REQUEST: u8 = 0x02;
    pub const LOGIN_REQUEST: u8 = 0x03;
    pub const TEXT_REQUEST: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT_REQUEST: u8 = 0x06;
    pub const SNACK_REQUEST: u8 = 0x10;
    // target → initiator
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESPONSE: u8 = 0x21;
    pub const TASK_MGMT_RESPONSE: u8 = 0x22;
    pub const LOGIN_RESPONSE: u8 = 0x23;
    pub const TEXT_RESPONSE: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RESPONSE: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const ASYNC_MESSAGE: u8 = 0x32;
    pub const REJECT: u8 = 0x3f;
}

/// The reserved tag value meaning "no task" (RFC 7143 §11.18.3).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Flag bits shared by several PDUs.
const F_BIT: u8 = 0x80;

fn header(op: u8, immediate: bool, flags: u8) -> RawPdu {
    let mut p = RawPdu::default();
    p.bhs[0] = op | if immediate { 0x40 } else { 0 };
    p.bhs[1] = flags;
    p
}

fn expect_op(raw: &RawPdu, op: u8) -> Result<(), PduError> {
    if raw.opcode() == op {
        Ok(())
    } else {
        Err(PduError::UnknownOpcode(raw.opcode()))
    }
}

fn lun_of(raw: &RawPdu) -> [u8; 8] {
    let mut l = [0u8; 8];
    l.copy_from_slice(&raw.bhs[8..16]);
    l
}

// ---------------------------------------------------------------------------------------------
// SCSI Command (§11.3) and its Extended-CDB AHS (§11.2.2.3)

/// AHSType of the Extended CDB AHS.
pub const AHS_TYPE_EXTENDED_CDB: u8 = 1;
/// Longest CDB we accept: the Linux initiator's SCSI_MAX_VARLEN_CDB_SIZE.
pub const MAX_CDB_LEN: usize = 260;

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
        let mut cdb = raw.bhs[32..48].to_vec();
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
            at += super::padded_len(3 + len);
        }
        let flags = raw.bhs[1];
        Ok(Self {
            immediate: raw.immediate(),
            final_flag: flags & F_BIT != 0,
            read: flags & 0x40 != 0,
            write: flags & 0x20 != 0,
            attr: flags & 0x07,
            lun: lun_of(raw),
            itt: raw.itt(),
            expected_data_len: raw.u32_at(20),
            cmd_sn: raw.u32_at(24),
            exp_stat_sn: raw.u32_at(28),
            cdb,
            data: raw.data.clone(),
        })
    }

    pub fn to_raw(&self) -> RawPdu {
        let flags = if self.final_flag { F_BIT } else { 0 }
            | if self.read { 0x40 } else { 0 }
            | if self.write { 0x20 } else { 0 }
            | (self.attr & 7);
        let mut p = header(opcode::SCSI_COMMAND, self.immediate, flags);
        p.bhs[8..16].copy_from_slice(&self.lun);
        p.put_u32(16, self.itt);
        p.put_u32(20, self.expected_data_len);
        p.put_u32(24, self.cmd_sn);
        p.put_u32(28, self.exp_stat_sn);
        let head = self.cdb.len().min(16);
        p.bhs[32..32 + head].copy_from_slice(&self.cdb[..head]);
        if self.cdb.len() > 16 {
            let extra = &self.cdb[16..];
            let len = (extra.len() + 1) as u16;
            p.ahs.extend_from_slice(&len.to_be_bytes());
            p.ahs.push(AHS_TYPE_EXTENDED_CDB);
            p.ahs.push(0);
            p.ahs.extend_from_slice(extra);
            p.ahs.resize(super::padded_len(p.ahs.len()), 0);
        }
        p.data = self.data.clone();
        p.seal()
    }
}

// ---------------------------------------------------------------------------------------------
// SCSI Response (§11.4)

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
    fn flags(self) -> u8 {
        match self {
            Residual::None => 0,
            Residual::Overflow(_) => 0x04,
            Residual::Underflow(_) => 0x02,
        }
    }
    fn count(self) -> u32 {
        match self {
            Residual::None => 0,
            Residual::Overflow(n) | Residual::Underflow(n) => n,
        }
    }
    fn from_flags(flags: u8, count: u32) -> Self {
        if flags & 0x04 != 0 {
            Residual::Overflow(count)
        } else if flags & 0x02 != 0 {
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
        p.bhs[2] = self.response;
        p.bhs[3] = self.status;
        p.put_u32(16, self.itt);
        p.put_u32(24, self.stat_sn);
        p.put_u32(28, self.exp_cmd_sn);
        p.put_u32(32, self.max_cmd_sn);
        p.put_u32(36, self.exp_data_sn);
        p.put_u32(44, self.residual.count());
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
            residual: Residual::from_flags(raw.bhs[1], raw.u32_at(44)),
            response: raw.bhs[2],
            status: raw.bhs[3],
            itt: raw.itt(),
            stat_sn: raw.u32_at(24),
            exp_cmd_sn: raw.u32_at(28),
            max_cmd_sn: raw.u32_at(32),
            exp_data_sn: raw.u32_at(36),
            sense,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// SCSI Data-In (§11.7) and Data-Out (§11.8)

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
            flags |= 0x01 | self.residual.flags();
        }
        let mut p = header(opcode::DATA_IN, false, flags);
        p.bhs[3] = self.status.unwrap_or(0);
        p.bhs[8..16].copy_from_slice(&self.lun);
        p.put_u32(16, self.itt);
        p.put_u32(20, RESERVED_TAG);
        if self.status.is_some() {
            p.put_u32(24, self.stat_sn);
            p.put_u32(44, self.residual.count());
        }
        p.put_u32(28, self.exp_cmd_sn);
        p.put_u32(32, self.max_cmd_sn);
        p.put_u32(36, self.data_sn);
        p.put_u32(40, self.buffer_offset);
        p.data = self.data.clone();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::DATA_IN)?;
        let flags = raw.bhs[1];
        let has_status = flags & 0x01 != 0;
        Ok(Self {
            final_flag: flags & F_BIT != 0,
            status: has_status.then_some(raw.bhs[3]),
            residual: if has_status {
                Residual::from_flags(flags, raw.u32_at(44))
            } else {
                Residual::None
            },
            lun: lun_of(raw),
            itt: raw.itt(),
            stat_sn: if has_status { raw.u32_at(24) } else { 0 },
            exp_cmd_sn: raw.u32_at(28),
            max_cmd_sn: raw.u32_at(32),
            data_sn: raw.u32_at(36),
            buffer_offset: raw.u32_at(40),
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
        p.bhs[8..16].copy_from_slice(&self.lun);
        p.put_u32(16, self.itt);
        p.put_u32(20, self.ttt);
        p.put_u32(28, self.exp_stat_sn);
        p.put_u32(36, self.data_sn);
        p.put_u32(40, self.buffer_offset);
        p.data = self.data.clone();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::DATA_OUT)?;
        Ok(Self {
            final_flag: raw.bhs[1] & F_BIT != 0,
            lun: lun_of(raw),
            itt: raw.itt(),
            ttt: raw.u32_at(20),
            exp_stat_sn: raw.u32_at(28),
            data_sn: raw.u32_at(36),
            buffer_offset: raw.u32_at(40),
            data: raw.data.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Ready To Transfer (§11.8)

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
        p.bhs[8..16].copy_from_slice(&self.lun);
        p.put_u32(16, self.itt);
        p.put_u32(20, self.ttt);
        p.put_u32(24, self.stat_sn);
        p.put_u32(28, self.exp_cmd_sn);
        p.put_u32(32, self.max_cmd_sn);
        p.put_u32(36, self.r2t_sn);
        p.put_u32(40, self.buffer_offset);
        p.put_u32(44, self.desired_len);
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::R2T)?;
        Ok(Self {
            lun: lun_of(raw),
            itt: raw.itt(),
            ttt: raw.u32_at(20),
            stat_sn: raw.u32_at(24),
            exp_cmd_sn: raw.u32_at(28),
            max_cmd_sn: raw.u32_at(32),
            r2t_sn: raw.u32_at(36),
            buffer_offset: raw.u32_at(40),
            desired_len: raw.u32_at(44),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// NOP-Out (§11.18) and NOP-In (§11.19)

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
        p.bhs[8..16].copy_from_slice(&self.lun);
        p.put_u32(16, self.itt);
        p.put_u32(20, self.ttt);
        p.put_u32(24, self.cmd_sn);
        p.put_u32(28, self.exp_stat_sn);
        p.data = self.data.clone();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::NOP_OUT)?;
        Ok(Self {
            immediate: raw.immediate(),
            lun: lun_of(raw),
            itt: raw.itt(),
            ttt: raw.u32_at(20),
            cmd_sn: raw.u32_at(24),
            exp_stat_sn: raw.u32_at(28),
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
        p.bhs[8..16].copy_from_slice(&self.lun);
        p.put_u32(16, self.itt);
        p.put_u32(20, self.ttt);
        p.put_u32(24, self.stat_sn);
        p.put_u32(28, self.exp_cmd_sn);
        p.put_u32(32, self.max_cmd_sn);
        p.data = self.data.clone();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::NOP_IN)?;
        Ok(Self {
            lun: lun_of(raw),
            itt: raw.itt(),
            ttt: raw.u32_at(20),
            stat_sn: raw.u32_at(24),
            exp_cmd_sn: raw.u32_at(28),
            max_cmd_sn: raw.u32_at(32),
            data: raw.data.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Login Request (§11.12) and Login Response (§11.13)

/// Login stages (CSG / NSG values, RFC 7143 §11.12.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Security = 0,
    Operational = 1,
    FullFeature = 3,
}

impl Stage {
    fn from_bits(b: u8) -> Result<Self, PduError> {
        match b & 3 {
            0 => Ok(Stage::Security),
            1 => Ok(Stage::Operational),
            3 => Ok(Stage::FullFeature),
            _ => Err(PduError::Malformed {
                pdu: "Login",
                reason: "stage 2 is reserved",
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    pub transit: bool,
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub data: Vec<u8>,
}

impl LoginRequest {
    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::LOGIN_REQUEST)?;
        let f = raw.bhs[1];
        let mut isid = [0u8; 6];
        isid.copy_from_slice(&raw.bhs[8..14]);
        let transit = f & 0x80 != 0;
        Ok(Self {
            transit,
            cont: f & 0x40 != 0,
            csg: Stage::from_bits(f >> 2)?,
            // NSG is reserved (and may be anything) when T=0.
            nsg: if transit {
                Stage::from_bits(f)?
            } else {
                Stage::from_bits(f >> 2)?
            },
            version_max: raw.bhs[2],
            version_min: raw.bhs[3],
            isid,
            tsih: raw.u16_at(14),
            itt: raw.itt(),
            cid: raw.u16_at(20),
            cmd_sn: raw.u32_at(24),
            exp_stat_sn: raw.u32_at(28),
            data: raw.data.clone(),
        })
    }

    pub fn to_raw(&self) -> RawPdu {
        let flags = if self.transit { 0x80 } else { 0 }
            | if self.cont { 0x40 } else { 0 }
            | (self.csg as u8) << 2
            | if self.transit { self.nsg as u8 } else { 0 };
        let mut p = header(opcode::LOGIN_REQUEST, true, flags);
        p.bhs[2] = self.version_max;
        p.bhs[3] = self.version_min;
        p.bhs[8..14].copy_from_slice(&self.isid);
        p.put_u16(14, self.tsih);
        p.put_u32(16, self.itt);
        p.put_u16(20, self.cid);
        p.put_u32(24, self.cmd_sn);
        p.put_u32(28, self.exp_stat_sn);
        p.data = self.data.clone();
        p.seal()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginResponse {
    pub transit: bool,
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub version_max: u8,
    pub version_active: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub status_class: u8,
    pub status_detail: u8,
    pub data: Vec<u8>,
}

impl LoginResponse {
    pub fn to_raw(&self) -> RawPdu {
        let flags = if self.transit { 0x80 } else { 0 }
            | if self.cont { 0x40 } else { 0 }
            | (self.csg as u8) << 2
            | if self.transit { self.nsg as u8 } else { 0 };
        let mut p = header(opcode::LOGIN_RESPONSE, false, flags);
        p.bhs[2] = self.version_max;
        p.bhs[3] = self.version_active;
        p.bhs[8..14].copy_from_slice(&self.isid);
        p.put_u16(14, self.tsih);
        p.put_u32(16, self.itt);
        p.put_u32(24, self.stat_sn);
        p.put_u32(28, self.exp_cmd_sn);
        p.put_u32(32, self.max_cmd_sn);
        p.bhs[36] = self.status_class;
        p.bhs[37] = self.status_detail;
        p.data = self.data.clone();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::LOGIN_RESPONSE)?;
        let f = raw.bhs[1];
        let mut isid = [0u8; 6];
        isid.copy_from_slice(&raw.bhs[8..14]);
        let transit = f & 0x80 != 0;
        Ok(Self {
            transit,
            cont: f & 0x40 != 0,
            csg: Stage::from_bits(f >> 2)?,
            nsg: if transit {
                Stage::from_bits(f)?
            } else {
                Stage::from_bits(f >> 2)?
            },
            version_max: raw.bhs[2],
            version_active: raw.bhs[3],
            isid,
            tsih: raw.u16_at(14),
            itt: raw.itt(),
            stat_sn: raw.u32_at(24),
            exp_cmd_sn: raw.u32_at(28),
            max_cmd_sn: raw.u32_at(32),
            status_class: raw.bhs[36],
            status_detail: raw.bhs[37],
            data: raw.data.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Text Request (§11.10) and Text Response (§11.11)

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
            final_flag: raw.bhs[1] & 0x80 != 0,
            cont: raw.bhs[1] & 0x40 != 0,
            lun: lun_of(raw),
            itt: raw.itt(),
            ttt: raw.u32_at(20),
            cmd_sn: raw.u32_at(24),
            exp_stat_sn: raw.u32_at(28),
            data: raw.data.clone(),
        })
    }

    pub fn to_raw(&self) -> RawPdu {
        let flags = if self.final_flag { 0x80 } else { 0 } | if self.cont { 0x40 } else { 0 };
        let mut p = header(opcode::TEXT_REQUEST, self.immediate, flags);
        p.bhs[8..16].copy_from_slice(&self.lun);
        p.put_u32(16, self.itt);
        p.put_u32(20, self.ttt);
        p.put_u32(24, self.cmd_sn);
        p.put_u32(28, self.exp_stat_sn);
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
        let flags = if self.final_flag { 0x80 } else { 0 } | if self.cont { 0x40 } else { 0 };
        let mut p = header(opcode::TEXT_RESPONSE, false, flags);
        p.bhs[8..16].copy_from_slice(&self.lun);
        p.put_u32(16, self.itt);
        p.put_u32(20, self.ttt);
        p.put_u32(24, self.stat_sn);
        p.put_u32(28, self.exp_cmd_sn);
        p.put_u32(32, self.max_cmd_sn);
        p.data = self.data.clone();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::TEXT_RESPONSE)?;
        Ok(Self {
            final_flag: raw.bhs[1] & 0x80 != 0,
            cont: raw.bhs[1] & 0x40 != 0,
            lun: lun_of(raw),
            itt: raw.itt(),
            ttt: raw.u32_at(20),
            stat_sn: raw.u32_at(24),
            exp_cmd_sn: raw.u32_at(28),
            max_cmd_sn: raw.u32_at(32),
            data: raw.data.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Logout Request (§11.14) and Logout Response (§11.15)

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
            reason: raw.bhs[1] & 0x7f,
            itt: raw.itt(),
            cid: raw.u16_at(20),
            cmd_sn: raw.u32_at(24),
            exp_stat_sn: raw.u32_at(28),
        })
    }

    pub fn to_raw(&self) -> RawPdu {
        let mut p = header(
            opcode::LOGOUT_REQUEST,
            self.immediate,
            F_BIT | (self.reason & 0x7f),
        );
        p.put_u32(16, self.itt);
        p.put_u16(20, self.cid);
        p.put_u32(24, self.cmd_sn);
        p.put_u32(28, self.exp_stat_sn);
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
        p.bhs[2] = self.response;
        p.put_u32(16, self.itt);
        p.put_u32(24, self.stat_sn);
        p.put_u32(28, self.exp_cmd_sn);
        p.put_u32(32, self.max_cmd_sn);
        p.put_u16(40, self.time2wait);
        p.put_u16(42, self.time2retain);
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::LOGOUT_RESPONSE)?;
        Ok(Self {
            response: raw.bhs[2],
            itt: raw.itt(),
            stat_sn: raw.u32_at(24),
            exp_cmd_sn: raw.u32_at(28),
            max_cmd_sn: raw.u32_at(32),
            time2wait: raw.u16_at(40),
            time2retain: raw.u16_at(42),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Task Management Function Request (§11.5) and Response (§11.6)

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
            function: raw.bhs[1] & 0x7f,
            lun: lun_of(raw),
            itt: raw.itt(),
            referenced_task_tag: raw.u32_at(20),
            cmd_sn: raw.u32_at(24),
            exp_stat_sn: raw.u32_at(28),
            ref_cmd_sn: raw.u32_at(32),
            exp_data_sn: raw.u32_at(36),
        })
    }

    pub fn to_raw(&self) -> RawPdu {
        let mut p = header(
            opcode::TASK_MGMT_REQUEST,
            self.immediate,
            F_BIT | (self.function & 0x7f),
        );
        p.bhs[8..16].copy_from_slice(&self.lun);
        p.put_u32(16, self.itt);
        p.put_u32(20, self.referenced_task_tag);
        p.put_u32(24, self.cmd_sn);
        p.put_u32(28, self.exp_stat_sn);
        p.put_u32(32, self.ref_cmd_sn);
        p.put_u32(36, self.exp_data_sn);
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
        p.bhs[2] = self.response;
        p.put_u32(16, self.itt);
        p.put_u32(24, self.stat_sn);
        p.put_u32(28, self.exp_cmd_sn);
        p.put_u32(32, self.max_cmd_sn);
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::TASK_MGMT_RESPONSE)?;
        Ok(Self {
            response: raw.bhs[2],
            itt: raw.itt(),
            stat_sn: raw.u32_at(24),
            exp_cmd_sn: raw.u32_at(28),
            max_cmd_sn: raw.u32_at(32),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Reject (§11.17)

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
        p.bhs[2] = self.reason;
        p.put_u32(16, RESERVED_TAG);
        p.put_u32(24, self.stat_sn);
        p.put_u32(28, self.exp_cmd_sn);
        p.put_u32(32, self.max_cmd_sn);
        p.data = self.rejected_bhs.to_vec();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::REJECT)?;
        let mut rejected_bhs = [0u8; BHS_LEN];
        let n = raw.data.len().min(BHS_LEN);
        rejected_bhs[..n].copy_from_slice(&raw.data[..n]);
        Ok(Self {
            reason: raw.bhs[2],
            stat_sn: raw.u32_at(24),
            exp_cmd_sn: raw.u32_at(28),
            max_cmd_sn: raw.u32_at(32),
            rejected_bhs,
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// Every PDU an initiator may send, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    NopOut(NopOut),
    ScsiCommand(ScsiCommand),
    TaskMgmt(TaskMgmtRequest),
    Login(LoginRequest),
    Text(TextRequest),
    DataOut(DataOut),
    Logout(LogoutRequest),
    /// SNACK needs ErrorRecoveryLevel > 0, which we never negotiate; kept to be rejected politely.
    Snack,
}

impl Request {
    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        Ok(match raw.opcode() {
            opcode::NOP_OUT => Request::NopOut(NopOut::from_raw(raw)?),
            opcode::SCSI_COMMAND => Request::ScsiCommand(ScsiCommand::from_raw(raw)?),
            opcode::TASK_MGMT_REQUEST => Request::TaskMgmt(TaskMgmtRequest::from_raw(raw)?),
            opcode::LOGIN_REQUEST => Request::Login(LoginRequest::from_raw(raw)?),
            opcode::TEXT_REQUEST => Request::Text(TextRequest::from_raw(raw)?),
            opcode::DATA_OUT => Request::DataOut(DataOut::from_raw(raw)?),
            opcode::LOGOUT_REQUEST => Request::Logout(LogoutRequest::from_raw(raw)?),
            opcode::SNACK_REQUEST => Request::Snack,
            other => return Err(PduError::UnknownOpcode(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lun() -> impl Strategy<Value = [u8; 8]> {
        any::<[u8; 8]>()
    }
    fn residual() -> impl Strategy<Value = Residual> {
        prop_oneof![
            Just(Residual::None),
            any::<u32>().prop_map(Residual::Overflow),
            any::<u32>().prop_map(Residual::Underflow),
        ]
    }
    fn stage() -> impl Strategy<Value = Stage> {
        prop_oneof![
            Just(Stage::Security),
            Just(Stage::Operational),
            Just(Stage::FullFeature)
        ]
    }
    fn data() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..64)
    }

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
        fn scsi_response_round_trip(residual in residual(), response: u8, status: u8, itt: u32,
            a: u32, b: u32, c: u32, d: u32, sense in data()) {
            let r = ScsiResponse { residual, response, status, itt, stat_sn: a, exp_cmd_sn: b,
                max_cmd_sn: c, exp_data_sn: d, sense };
            prop_assert_eq!(ScsiResponse::from_raw(&r.to_raw()).unwrap(), r);
        }

        #[test]
        fn data_in_round_trip(final_flag: bool, status: Option<u8>, residual in residual(),
            lun in lun(), itt: u32, a: u32, b: u32, c: u32, d: u32, e: u32, data in data()) {
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

        #[test]
        fn nop_round_trip(immediate: bool, lun in lun(), itt: u32, ttt: u32, a: u32, b: u32,
            c: u32, data in data()) {
            let o = NopOut { immediate, lun, itt, ttt, cmd_sn: a, exp_stat_sn: b, data: data.clone() };
            prop_assert_eq!(NopOut::from_raw(&o.to_raw()).unwrap(), o);
            let i = NopIn { lun, itt, ttt, stat_sn: a, exp_cmd_sn: b, max_cmd_sn: c, data };
            prop_assert_eq!(NopIn::from_raw(&i.to_raw()).unwrap(), i);
        }

        #[test]
        fn login_round_trip(transit: bool, cont: bool, csg in stage(), nsg in stage(),
            vmax: u8, vmin: u8, isid: [u8; 6], tsih: u16, itt: u32, cid: u16, a: u32, b: u32,
            c: u32, sc: u8, sd: u8, data in data()) {
            let nsg = if transit { nsg } else { csg };
            let q = LoginRequest { transit, cont, csg, nsg, version_max: vmax, version_min: vmin,
                isid, tsih, itt, cid, cmd_sn: a, exp_stat_sn: b, data: data.clone() };
            prop_assert_eq!(LoginRequest::from_raw(&q.to_raw()).unwrap(), q);
            let r = LoginResponse { transit, cont, csg, nsg, version_max: vmax,
                version_active: vmin, isid, tsih, itt, stat_sn: a, exp_cmd_sn: b, max_cmd_sn: c,
                status_class: sc, status_detail: sd, data };
            prop_assert_eq!(LoginResponse::from_raw(&r.to_raw()).unwrap(), r);
        }

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

        #[test]
        fn logout_and_tmf_round_trip(immediate: bool, reason in 0u8..128, itt: u32, cid: u16,
            a: u32, b: u32, c: u32, d: u32, lun in lun(), resp: u8, t2w: u16, t2r: u16) {
            let q = LogoutRequest { immediate, reason, itt, cid, cmd_sn: a, exp_stat_sn: b };
            prop_assert_eq!(LogoutRequest::from_raw(&q.to_raw()).unwrap(), q);
            let r = LogoutResponse { response: resp, itt, stat_sn: a, exp_cmd_sn: b,
                max_cmd_sn: c, time2wait: t2w, time2retain: t2r };
            prop_assert_eq!(LogoutResponse::from_raw(&r.to_raw()).unwrap(), r);
            let t = TaskMgmtRequest { immediate, function: reason, lun, itt,
                referenced_task_tag: d, cmd_sn: a, exp_stat_sn: b, ref_cmd_sn: c, exp_data_sn: d };
            prop_assert_eq!(TaskMgmtRequest::from_raw(&t.to_raw()).unwrap(), t);
            let u = TaskMgmtResponse { response: resp, itt, stat_sn: a, exp_cmd_sn: b, max_cmd_sn: c };
            prop_assert_eq!(TaskMgmtResponse::from_raw(&u.to_raw()).unwrap(), u);
        }

        /// Any header, AHS and data decode to a value or an error, never a panic.
        #[test]
        fn request_decoder_is_total(bhs: [u8; 32], tail: [u8; 16],
            ahs in proptest::collection::vec(any::<u8>(), 0..64), data in data()) {
            let mut raw = RawPdu::default();
            raw.bhs[..32].copy_from_slice(&bhs);
            raw.bhs[32..].copy_from_slice(&tail);
            raw.ahs = ahs;
            raw.data = data;
            let _ = Request::from_raw(&raw);
        }
    }
}
