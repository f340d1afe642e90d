//! Sense data: the one place where SCSI errors become bytes (SPC-4 §4.5, fixed format 70h and,
//! for REQUEST SENSE with DESC=1, descriptor format 72h).
//!
//! Every handler returns `Result<_, Sense>`; [`Failure`] adds RESERVATION CONFLICT, the one
//! failure without sense data. The session puts [`Failure::status`] and
//! [`Failure::sense_bytes`] in the SCSI Response. Lun errors are mapped here too
//! ([`Sense::from_lun_error`]).

use crate::lun::LunError;

/// SCSI status codes (SAM-5 §5.3).
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const CONDITION_MET: u8 = 0x04;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
}

/// How a command fails: CHECK CONDITION with sense data, or RESERVATION CONFLICT, which
/// carries no sense data (SAM-5 §5.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Check(Sense),
    ReservationConflict,
}

impl Failure {
    /// The SCSI status byte for the response.
    pub fn status(&self) -> u8 {
        match self {
            Failure::Check(_) => status::CHECK_CONDITION,
            Failure::ReservationConflict => status::RESERVATION_CONFLICT,
        }
    }
    /// Sense data for the response: empty for RESERVATION CONFLICT.
    pub fn sense_bytes(&self) -> Vec<u8> {
        match self {
            Failure::Check(s) => s.to_bytes(),
            Failure::ReservationConflict => Vec::new(),
        }
    }
}

impl From<Sense> for Failure {
    fn from(s: Sense) -> Self {
        Failure::Check(s)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Check(s) => write!(f, "CHECK CONDITION: {s}"),
            Failure::ReservationConflict => f.write_str("RESERVATION CONFLICT"),
        }
    }
}

/// Sense keys (SPC-4 Table 48).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SenseKey {
    NoSense = 0x0,
    NotReady = 0x2,
    MediumError = 0x3,
    HardwareError = 0x4,
    IllegalRequest = 0x5,
    UnitAttention = 0x6,
    DataProtect = 0x7,
    AbortedCommand = 0xb,
    Miscompare = 0xe,
}

/// Where in the CDB or parameter list the offending field sits (sense-key specific bytes 15–17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    pub in_cdb: bool,
    pub byte: u16,
    pub bit: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sense {
    pub key: SenseKey,
    pub asc: u8,
    pub ascq: u8,
    pub field: Option<FieldPointer>,
    /// INFORMATION field (e.g. the offending LBA), with VALID=1.
    pub information: Option<u32>,
}

impl Sense {
    pub const fn new(key: SenseKey, asc: u8, ascq: u8) -> Self {
        Self {
            key,
            asc,
            ascq,
            field: None,
            information: None,
        }
    }

    /// ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE (20h/00h).
    pub const fn invalid_opcode() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x20, 0x00)
    }
    /// ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h).
    pub const fn lba_out_of_range() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x21, 0x00)
    }
    /// ILLEGAL REQUEST / INVALID FIELD IN CDB (24h/00h), pointing at `byte`.
    pub const fn invalid_field_in_cdb(byte: u16) -> Self {
        let mut s = Self::new(SenseKey::IllegalRequest, 0x24, 0x00);
        s.field = Some(FieldPointer {
            in_cdb: true,
            byte,
            bit: None,
        });
        s
    }
    /// As [`Sense::invalid_field_in_cdb`], naming the bit too.
    pub const fn invalid_bit_in_cdb(byte: u16, bit: u8) -> Self {
        let mut s = Self::invalid_field_in_cdb(byte);
        s.field = Some(FieldPointer {
            in_cdb: true,
            byte,
            bit: Some(bit),
        });
        s
    }
    /// ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED (25h/00h).
    pub const fn lun_not_supported() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x25, 0x00)
    }
    /// ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST (26h/00h).
    pub const fn invalid_field_in_parameter_list(byte: u16) -> Self {
        let mut s = Self::new(SenseKey::IllegalRequest, 0x26, 0x00);
        s.field = Some(FieldPointer {
            in_cdb: false,
            byte,
            bit: None,
        });
        s
    }
    /// ILLEGAL REQUEST / PARAMETER LIST LENGTH ERROR (1Ah/00h).
    pub const fn parameter_list_length_error() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x1a, 0x00)
    }
    /// ILLEGAL REQUEST / INVALID RELEASE OF PERSISTENT RESERVATION (26h/04h): the holder
    /// named the wrong type or scope (SPC-4 §5.13.11.2.2).
    pub const fn invalid_release_of_persistent_reservation() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x04)
    }
    /// ILLEGAL REQUEST / INVALID FIELD IN INFORMATION UNIT (0Eh/03h): the transport's
    /// Expected Data Transfer Length cannot carry what the CDB asks for (SAM-5 §5.4.2,
    /// RFC 7143 §11.4.5).
    pub const fn invalid_field_in_information_unit() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x0e, 0x03)
    }
    /// ABORTED COMMAND / PROTOCOL SERVICE CRC ERROR (47h/05h): data PDUs were lost or came out
    /// of order; at ErrorRecoveryLevel 0 the task ends this way (RFC 7143 §7.8, §7.9).
    pub const fn protocol_service_crc_error() -> Self {
        Self::new(SenseKey::AbortedCommand, 0x47, 0x05)
    }
    /// UNIT ATTENTION with the condition's code (SAM-5 §5.14).
    pub const fn unit_attention(asc: u8, ascq: u8) -> Self {
        Self::new(SenseKey::UnitAttention, asc, ascq)
    }
    /// NO SENSE: nothing to report (REQUEST SENSE with no pending condition).
    pub const fn no_sense() -> Self {
        Self::new(SenseKey::NoSense, 0, 0)
    }
    /// ILLEGAL REQUEST / SAVING PARAMETERS NOT SUPPORTED (39h/00h).
    pub const fn saving_parameters_not_supported() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x39, 0x00)
    }
    /// DATA PROTECT / WRITE PROTECTED (27h/00h).
    pub const fn write_protected() -> Self {
        Self::new(SenseKey::DataProtect, 0x27, 0x00)
    }
    /// MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION (1Dh/00h), at byte `offset`.
    pub const fn miscompare(offset: u32) -> Self {
        let mut s = Self::new(SenseKey::Miscompare, 0x1d, 0x00);
        s.information = Some(offset);
        s
    }
    /// MEDIUM ERROR / UNRECOVERED READ ERROR (11h/00h).
    pub const fn unrecovered_read_error() -> Self {
        Self::new(SenseKey::MediumError, 0x11, 0x00)
    }
    /// MEDIUM ERROR / WRITE ERROR (0Ch/00h).
    pub const fn write_error() -> Self {
        Self::new(SenseKey::MediumError, 0x0c, 0x00)
    }

    /// The one mapping from a logical unit's failure to what the initiator sees.
    pub fn from_lun_error(e: &LunError, writing: bool) -> Self {
        // The initiator sees only a sense code: the log says what failed (a damaged
        // volume names its pack and offset).
        if matches!(e, LunError::Io(_) | LunError::Damaged(_)) {
            tracing::warn!(error = %e, writing, "logical unit I/O failed: MEDIUM ERROR");
        }
        match e {
            LunError::ReadOnly => Self::write_protected(),
            LunError::DeallocateUnsupported => Self::invalid_opcode(),
            LunError::Io(_) if writing => Self::write_error(),
            LunError::Io(_) | LunError::Damaged(_) => Self::unrecovered_read_error(),
        }
    }

    /// Fixed-format sense data, 18 bytes (SPC-4 §4.5.3); libiscsi reads all 18.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; 18];
        b[0] = 0x70 | if self.information.is_some() { 0x80 } else { 0 };
        b[2] = self.key as u8;
        if let Some(info) = self.information {
            b[3..7].copy_from_slice(&info.to_be_bytes());
        }
        b[7] = 10;
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some(f) = self.field {
            b[15] = 0x80 | if f.in_cdb { 0x40 } else { 0 };
            if let Some(bit) = f.bit {
                b[15] |= 0x08 | (bit & 7);
            }
            b[16..18].copy_from_slice(&f.byte.to_be_bytes());
        }
        b
    }
}

impl Sense {
    /// Descriptor-format sense data (SPC-4 §4.5.2, response code 72h): the header, then an
    /// information descriptor and a sense-key specific descriptor when they have content.
    pub fn to_descriptor_bytes(&self) -> Vec<u8> {
        let mut b = vec![0x72, self.key as u8, self.asc, self.ascq, 0, 0, 0, 0];
        if let Some(info) = self.information {
            b.extend_from_slice(&[0x00, 0x0a, 0x80, 0]);
            b.extend_from_slice(&(info as u64).to_be_bytes());
        }
        if let Some(f) = self.field {
            let mut flags = 0x80 | if f.in_cdb { 0x40 } else { 0 };
            if let Some(bit) = f.bit {
                flags |= 0x08 | (bit & 7);
            }
            b.extend_from_slice(&[0x02, 0x06, 0, 0, flags]);
            b.extend_from_slice(&f.byte.to_be_bytes());
            b.push(0);
        }
        b[7] = (b.len() - 8) as u8;
        b
    }
}

impl std::fmt::Display for Sense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key {:?} asc/ascq {:02x}h/{:02x}h",
            self.key, self.asc, self.ascq
        )?;
        if let Some(p) = self.field {
            write!(f, " field byte {}", p.byte)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden vectors from research/scsi-facts.md §5, checked there with `sg_decode_sense`.
    #[test]
    fn golden_lba_out_of_range() {
        let want = [
            0x70, 0, 5, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0,
        ];
        assert_eq!(Sense::lba_out_of_range().to_bytes(), want);
    }

    #[test]
    fn golden_invalid_field_byte_1() {
        let want = [
            0x70, 0, 5, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x24, 0, 0, 0xc0, 0, 1,
        ];
        assert_eq!(Sense::invalid_field_in_cdb(1).to_bytes(), want);
    }

    #[test]
    fn descriptor_format_carries_the_same_codes() {
        let d = Sense::unit_attention(0x29, 0x03).to_descriptor_bytes();
        assert_eq!(d, [0x72, 6, 0x29, 0x03, 0, 0, 0, 0]);
        let d = Sense::invalid_field_in_cdb(1).to_descriptor_bytes();
        assert_eq!(d[7] as usize, d.len() - 8);
        assert_eq!(&d[8..], &[0x02, 0x06, 0, 0, 0xc0, 0, 1, 0]);
    }

    #[test]
    fn golden_write_protected() {
        let want = [
            0x70, 0, 7, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x27, 0, 0, 0, 0, 0,
        ];
        assert_eq!(Sense::write_protected().to_bytes(), want);
    }
}
