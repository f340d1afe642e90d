//! CDBs the initiator's users send most, built in one place (SBC-4 layouts; see
//! `shared/research/scsi-facts.md` §1 for GET LBA STATUS).

/// GET LBA STATUS(16): SERVICE ACTION IN(16) 0x9E, service action 0x12.
pub fn get_lba_status_16(lba: u64, allocation_length: u32, report_type: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = 0x12;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&allocation_length.to_be_bytes());
    c[14] = report_type;
    c
}

/// GET LBA STATUS(32): variable-length CDB 0x7F, additional length 0x18, service
/// action 0x0012. Over iSCSI its last 16 bytes travel in an Extended-CDB AHS.
pub fn get_lba_status_32(
    lba: u64,
    scan_length: u32,
    report_type: u8,
    element: u32,
    allocation_length: u32,
) -> [u8; 32] {
    let mut c = [0u8; 32];
    c[0] = 0x7f;
    c[7] = 0x18;
    c[8..10].copy_from_slice(&0x0012u16.to_be_bytes());
    c[10] = report_type;
    c[12..20].copy_from_slice(&lba.to_be_bytes());
    c[20..24].copy_from_slice(&scan_length.to_be_bytes());
    c[24..28].copy_from_slice(&element.to_be_bytes());
    c[28..32].copy_from_slice(&allocation_length.to_be_bytes());
    c
}

/// READ CAPACITY(16): SERVICE ACTION IN(16) 0x9E, service action 0x10, 32 bytes.
pub fn read_capacity_16() -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = 0x10;
    c[13] = 32;
    c
}

/// Standard INQUIRY data, at most `allocation_length` bytes.
pub fn inquiry(allocation_length: u16) -> [u8; 6] {
    let mut c = [0u8; 6];
    c[0] = 0x12;
    c[3..5].copy_from_slice(&allocation_length.to_be_bytes());
    c
}

/// READ(16) of `blocks` logical blocks from `lba`.
pub fn read_16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x88;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// WRITE(10) of `blocks` logical blocks at `lba`.
pub fn write_10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x2a;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::cdb::{Command, parse};

    #[test]
    fn the_target_parses_what_the_builders_build() {
        let Ok(Command::GetLbaStatus(g)) = parse(&get_lba_status_32(7, 9, 1, 0, 4096)) else {
            panic!("GET LBA STATUS(32) did not parse as itself");
        };
        assert_eq!((g.lba, g.allocation_length), (7, 4096));
        assert!(matches!(
            parse(&get_lba_status_16(7, 24, 0)),
            Ok(Command::GetLbaStatus(_))
        ));
        assert!(parse(&read_16(1, 2)).is_ok());
        assert!(parse(&write_10(1, 1)).is_ok());
        assert!(parse(&read_capacity_16()).is_ok());
        assert!(parse(&inquiry(96)).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn the_target_parses_every_built_cdb_back_to_its_fields(
            lba in 0u64..u64::MAX / 2, scan: u32, report in 0u8..=4, alloc in 24u32..1 << 20,
            blocks in 1u32..1 << 16, inq in 5u16..=u16::MAX,
        ) {
            let Ok(Command::GetLbaStatus(g)) = parse(&get_lba_status_32(lba, scan, report, 0, alloc)) else {
                panic!("GET LBA STATUS(32)");
            };
            proptest::prop_assert_eq!(
                (g.lba, g.scan_length, g.report_type, g.allocation_length, g.long_form),
                (lba, scan, report, alloc, true)
            );
            let Ok(Command::GetLbaStatus(g)) = parse(&get_lba_status_16(lba, alloc, report)) else {
                panic!("GET LBA STATUS(16)");
            };
            proptest::prop_assert_eq!((g.lba, g.allocation_length, g.long_form), (lba, alloc, false));
            let Ok(Command::Read(r)) = parse(&read_16(lba, blocks)) else { panic!("READ(16)") };
            proptest::prop_assert_eq!((r.lba, r.blocks), (lba, u64::from(blocks)));
            let Ok(Command::Inquiry { evpd, allocation_length, .. }) = parse(&inquiry(inq)) else {
                panic!("INQUIRY")
            };
            proptest::prop_assert_eq!((evpd, allocation_length), (false, inq));
        }
    }
}
