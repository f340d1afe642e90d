//! What an initiator reads back, decoded: sense data (fixed and descriptor formats),
//! READ CAPACITY(16) parameter data and standard INQUIRY data. Pure, and shared by every
//! transport that sends the builders' CDBs (the iSCSI initiator here, SG_IO in the
//! service's scanner). Tested against the target's own encoders.

/// SENSE KEY, ADDITIONAL SENSE CODE and QUALIFIER: what a CHECK CONDITION means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenseCode {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

/// The code of sense data in fixed (70h/71h) or descriptor (72h/73h) format (SPC-4 §4.5).
pub fn sense_code(sense: &[u8]) -> Option<SenseCode> {
    match sense.first()? & 0x7f {
        0x70 | 0x71 if sense.len() >= 14 => Some(SenseCode {
            key: sense[2] & 0x0f,
            asc: sense[12],
            ascq: sense[13],
        }),
        0x72 | 0x73 if sense.len() >= 4 => Some(SenseCode {
            key: sense[1] & 0x0f,
            asc: sense[2],
            ascq: sense[3],
        }),
        _ => None,
    }
}

/// READ CAPACITY(16)'s answer (SBC-4 §5.20.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub last_lba: u64,
    /// LOGICAL BLOCK LENGTH IN BYTES.
    pub block_len: u32,
    /// LBPME: logical block provisioning is on (GET LBA STATUS tells something).
    pub provisioning: bool,
}

impl Capacity {
    pub fn blocks(&self) -> u64 {
        self.last_lba + 1
    }
}

pub fn capacity_16(data: &[u8]) -> Option<Capacity> {
    if data.len() < 12 {
        return None;
    }
    let block_len = u32::from_be_bytes(data[8..12].try_into().ok()?);
    let last_lba = u64::from_be_bytes(data[0..8].try_into().ok()?);
    (block_len > 0 && last_lba < u64::MAX).then_some(Capacity {
        last_lba,
        block_len,
        provisioning: data.get(14).is_some_and(|b| b & 0x80 != 0),
    })
}

/// Standard INQUIRY data (SPC-4 §6.6.2): what is at the other end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inquiry {
    pub qualifier: u8,
    /// PERIPHERAL DEVICE TYPE: 0 is a direct-access block device.
    pub device_type: u8,
    pub vendor: String,
    pub product: String,
    pub revision: String,
}

pub fn standard_inquiry(data: &[u8]) -> Option<Inquiry> {
    if data.len() < 36 {
        return None;
    }
    let text = |r: std::ops::Range<usize>| String::from_utf8_lossy(&data[r]).trim_end().to_string();
    Some(Inquiry {
        qualifier: data[0] >> 5,
        device_type: data[0] & 0x1f,
        vendor: text(8..16),
        product: text(16..32),
        revision: text(32..36),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lun::{Lun, LunError, Provisioning};
    use crate::scsi::sense::{FieldPointer, Sense, SenseKey};
    use proptest::prelude::*;

    struct Sized(u64, u32);

    impl Lun for Sized {
        fn block_size(&self) -> u32 {
            self.1
        }
        fn block_count(&self) -> u64 {
            self.0
        }
        fn read_only(&self) -> bool {
            true
        }
        fn read(&self, _lba: u64, _buf: &mut [u8]) -> Result<(), LunError> {
            Ok(())
        }
        fn provisioning(&self, _lba: u64) -> Result<(Provisioning, u64), LunError> {
            Ok((Provisioning::Mapped, 1))
        }
        fn serial(&self) -> String {
            "s".into()
        }
    }

    const KEYS: [SenseKey; 9] = [
        SenseKey::NoSense,
        SenseKey::NotReady,
        SenseKey::MediumError,
        SenseKey::HardwareError,
        SenseKey::IllegalRequest,
        SenseKey::UnitAttention,
        SenseKey::DataProtect,
        SenseKey::AbortedCommand,
        SenseKey::Miscompare,
    ];

    proptest! {
        #[test]
        fn sense_decodes_what_the_target_encodes_in_both_formats(
            key in 0usize..KEYS.len(), asc: u8, ascq: u8,
            information: Option<u32>, field: Option<(bool, u16, Option<u8>)>,
        ) {
            let sense = Sense {
                key: KEYS[key],
                asc,
                ascq,
                information,
                field: field.map(|(in_cdb, byte, bit)| FieldPointer { in_cdb, byte, bit: bit.map(|b| b & 7) }),
            };
            let want = SenseCode { key: KEYS[key] as u8, asc, ascq };
            prop_assert_eq!(sense_code(&sense.to_bytes()), Some(want));
            prop_assert_eq!(sense_code(&sense.to_descriptor_bytes()), Some(want));
        }

        #[test]
        fn capacity_decodes_what_the_target_encodes(blocks in 1u64..u64::MAX / 2, big: bool) {
            let block_len = if big { 4096 } else { 512 };
            let data = crate::scsi::capacity::read_capacity_16(&Sized(blocks, block_len), 32).unwrap();
            let c = capacity_16(&data).unwrap();
            prop_assert_eq!((c.blocks(), c.block_len, c.provisioning), (blocks, block_len, true));
        }

        #[test]
        fn short_or_foreign_answers_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            prop_assert!(capacity_16(&bytes).is_none());
            prop_assert!(standard_inquiry(&bytes).is_none());
        }
    }

    #[test]
    fn inquiry_decodes_what_the_target_encodes() {
        let data = crate::scsi::inquiry::inquiry(
            &Sized(8, 512),
            false,
            0,
            96,
            &crate::scsi::limits::Limits::default(),
        )
        .unwrap();
        let i = standard_inquiry(&data).unwrap();
        assert_eq!((i.qualifier, i.device_type), (0, 0));
        assert_eq!(
            (i.vendor.as_str(), i.product.as_str()),
            ("BLKDELTA", "target-emulator")
        );
        assert_eq!(sense_code(&[0x00; 18]), None);
    }
}
