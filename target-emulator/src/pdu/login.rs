//! Login Request (RFC 7143 §11.12) and Login Response (§11.13). Both carry the same byte-1
//! stage flags (T, C, CSG, NSG) and ISID/TSIH, described once here for both directions.

use super::bhs::RawPdu;
use super::error::PduError;
use super::fields::{
    CMD_SN, EXP_CMD_SN, EXP_STAT_SN, ITT, MAX_CMD_SN, STAT_SN, TTT, expect_op, header,
};
use super::opcode;

// Byte 1 (§11.12.1–11.12.3): Transit, Continue, then CSG in bits 3–2 and NSG in bits 1–0.
const TRANSIT_BIT: u8 = 0x80;
const CONTINUE_BIT: u8 = 0x40;
const CSG_SHIFT: u8 = 2;
/// Byte 2: Version-max; byte 3: Version-min (request) or Version-active (response).
const VERSION_MAX: usize = 2;
const VERSION_OTHER: usize = 3;
/// Bytes 8–13: ISID; bytes 14–15: TSIH.
const ISID: usize = 8;
const TSIH: usize = 14;
/// Bytes 20–21 of a Login Request: the CID (where other PDUs hold a TTT).
const CID: usize = TTT;
/// Bytes 36–37 of a Login Response: Status-Class and Status-Detail.
const STATUS_CLASS: usize = 36;
const STATUS_DETAIL: usize = 37;

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

/// The byte-1 flags of a Login PDU, decoded: both directions share them.
struct StageFlags {
    transit: bool,
    cont: bool,
    csg: Stage,
    nsg: Stage,
}

impl StageFlags {
    fn encode(&self) -> u8 {
        let transit = if self.transit { TRANSIT_BIT } else { 0 };
        let cont = if self.cont { CONTINUE_BIT } else { 0 };
        let nsg = if self.transit { self.nsg as u8 } else { 0 };
        transit | cont | (self.csg as u8) << CSG_SHIFT | nsg
    }

    fn decode(f: u8) -> Result<Self, PduError> {
        let transit = f & TRANSIT_BIT != 0;
        Ok(Self {
            transit,
            cont: f & CONTINUE_BIT != 0,
            csg: Stage::from_bits(f >> CSG_SHIFT)?,
            // NSG is reserved (and may be anything) when T=0.
            nsg: if transit {
                Stage::from_bits(f)?
            } else {
                Stage::from_bits(f >> CSG_SHIFT)?
            },
        })
    }
}

fn isid_of(raw: &RawPdu) -> [u8; 6] {
    let mut isid = [0u8; 6];
    isid.copy_from_slice(&raw.bhs[ISID..ISID + 6]);
    isid
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
        let StageFlags {
            transit,
            cont,
            csg,
            nsg,
        } = StageFlags::decode(raw.bhs[1])?;
        Ok(Self {
            transit,
            cont,
            csg,
            nsg,
            version_max: raw.bhs[VERSION_MAX],
            version_min: raw.bhs[VERSION_OTHER],
            isid: isid_of(raw),
            tsih: raw.u16_at(TSIH),
            itt: raw.u32_at(ITT),
            cid: raw.u16_at(CID),
            cmd_sn: raw.u32_at(CMD_SN),
            exp_stat_sn: raw.u32_at(EXP_STAT_SN),
            data: raw.data.clone(),
        })
    }

    pub fn to_raw(&self) -> RawPdu {
        let flags = StageFlags {
            transit: self.transit,
            cont: self.cont,
            csg: self.csg,
            nsg: self.nsg,
        }
        .encode();
        let mut p = header(opcode::LOGIN_REQUEST, true, flags);
        p.bhs[VERSION_MAX] = self.version_max;
        p.bhs[VERSION_OTHER] = self.version_min;
        p.bhs[ISID..ISID + 6].copy_from_slice(&self.isid);
        p.put_u16(TSIH, self.tsih);
        p.put_u32(ITT, self.itt);
        p.put_u16(CID, self.cid);
        p.put_u32(CMD_SN, self.cmd_sn);
        p.put_u32(EXP_STAT_SN, self.exp_stat_sn);
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
        let flags = StageFlags {
            transit: self.transit,
            cont: self.cont,
            csg: self.csg,
            nsg: self.nsg,
        }
        .encode();
        let mut p = header(opcode::LOGIN_RESPONSE, false, flags);
        p.bhs[VERSION_MAX] = self.version_max;
        p.bhs[VERSION_OTHER] = self.version_active;
        p.bhs[ISID..ISID + 6].copy_from_slice(&self.isid);
        p.put_u16(TSIH, self.tsih);
        p.put_u32(ITT, self.itt);
        p.put_u32(STAT_SN, self.stat_sn);
        p.put_u32(EXP_CMD_SN, self.exp_cmd_sn);
        p.put_u32(MAX_CMD_SN, self.max_cmd_sn);
        p.bhs[STATUS_CLASS] = self.status_class;
        p.bhs[STATUS_DETAIL] = self.status_detail;
        p.data = self.data.clone();
        p.seal()
    }

    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        expect_op(raw, opcode::LOGIN_RESPONSE)?;
        let StageFlags {
            transit,
            cont,
            csg,
            nsg,
        } = StageFlags::decode(raw.bhs[1])?;
        Ok(Self {
            transit,
            cont,
            csg,
            nsg,
            version_max: raw.bhs[VERSION_MAX],
            version_active: raw.bhs[VERSION_OTHER],
            isid: isid_of(raw),
            tsih: raw.u16_at(TSIH),
            itt: raw.u32_at(ITT),
            stat_sn: raw.u32_at(STAT_SN),
            exp_cmd_sn: raw.u32_at(EXP_CMD_SN),
            max_cmd_sn: raw.u32_at(MAX_CMD_SN),
            status_class: raw.bhs[STATUS_CLASS],
            status_detail: raw.bhs[STATUS_DETAIL],
            data: raw.data.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fields::strategies::data;
    use super::*;
    use proptest::prelude::*;

    fn stage() -> impl Strategy<Value = Stage> {
        prop_oneof![
            Just(Stage::Security),
            Just(Stage::Operational),
            Just(Stage::FullFeature)
        ]
    }

    proptest! {
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
    }
}
