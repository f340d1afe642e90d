//! Acceptance item 3 of the target-emulator issue: GET LBA STATUS(32), sent by our Rust test
//! initiator as BHS + Extended-CDB AHS (libiscsi can only send 16-byte CDBs), checked against
//! files with known holes.

mod common;

use common::*;
use target_emulator::ChapCredentials;
use target_emulator::initiator::{CommandResult, Initiator, LoginOptions, cdb};
use target_emulator::scsi::lba_status::{Extent, decode};

const SIZE: u64 = 64 << 20;

async fn connect(emu: &Emulator, chap: Option<ChapCredentials>, digests: bool) -> Initiator {
    let opts = LoginOptions {
        initiator_name: "iqn.2026-11.io.blockdelta:test-initiator".into(),
        target_name: Some(emu.iqn.clone()),
        chap,
        header_digest: digests,
        data_digest: digests,
    };
    Initiator::connect(emu.portal, &opts).await.expect("login")
}

async fn gls(
    i: &mut Initiator,
    lba: u64,
    scan: u32,
    rt: u8,
    alloc: u32,
    element: u32,
) -> CommandResult {
    i.command(
        &cdb::get_lba_status_32(lba, scan, rt, element, alloc),
        &[],
        alloc,
    )
    .await
    .expect("command")
}

/// Expected type-0 descriptors for `standard_extents`, in `block`-byte logical blocks.
fn expected_all(block: u64) -> Vec<Extent> {
    let mut v = Vec::new();
    let mut at = 0;
    for (off, len) in standard_extents(SIZE) {
        if off > at {
            v.push(Extent {
                lba: at / block,
                blocks: (off - at) / block,
                status: 1,
            });
        }
        v.push(Extent {
            lba: off / block,
            blocks: len / block,
            status: 0,
        });
        at = off + len;
    }
    if at < SIZE {
        v.push(Extent {
            lba: at / block,
            blocks: (SIZE - at) / block,
            status: 1,
        });
    }
    v
}

fn setup() -> (tempfile::TempDir, Emulator) {
    let dir = tempfile::tempdir().unwrap();
    let file = sparse_image(dir.path(), "holes.img", SIZE, &standard_extents(SIZE), 11);
    let emu = Emulator::start(&file, &["--read-only"]);
    (dir, emu)
}

#[tokio::test]
async fn report_type_0_lists_every_extent_to_the_end_of_medium() {
    let (_d, emu) = setup();
    let mut i = connect(&emu, None, false).await;
    let r = gls(&mut i, 0, 0, 0, 4096, 0).await;
    assert_eq!(r.status, 0);
    let (cc, rtp, ext) = decode(&r.data).unwrap();
    assert_eq!((cc, rtp), (3, true));
    assert_eq!(ext, expected_all(512));
}

#[tokio::test]
async fn report_types_1_2_3_filter_and_use_status_3_for_mapped() {
    let (_d, emu) = setup();
    let mut i = connect(&emu, None, false).await;
    let all = expected_all(512);
    let as3 = |e: &Extent| Extent {
        status: if e.status == 0 { 3 } else { e.status },
        ..*e
    };
    let t1 = decode(&gls(&mut i, 0, 0, 1, 4096, 0).await.data).unwrap().2;
    assert_eq!(t1, all.iter().map(as3).collect::<Vec<_>>());
    let t2 = decode(&gls(&mut i, 0, 0, 2, 4096, 0).await.data).unwrap().2;
    assert_eq!(
        t2,
        all.iter()
            .filter(|e| e.status == 0)
            .map(as3)
            .collect::<Vec<_>>()
    );
    let t3 = decode(&gls(&mut i, 0, 0, 3, 4096, 0).await.data).unwrap().2;
    assert_eq!(
        t3,
        all.iter()
            .filter(|e| e.status == 1)
            .copied()
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn scan_length_and_allocation_length_limits() {
    let (_d, emu) = setup();
    let mut i = connect(&emu, None, false).await;
    // Scan 5 MiB from 0: hole [0,2M), data [2M,3M), hole [3M,5M) clipped; condition 2.
    let (cc, _, ext) = decode(&gls(&mut i, 0, 10240, 0, 4096, 0).await.data).unwrap();
    assert_eq!(cc, 2);
    assert_eq!(
        ext,
        vec![
            Extent {
                lba: 0,
                blocks: 4096,
                status: 1
            },
            Extent {
                lba: 4096,
                blocks: 2048,
                status: 0
            },
            Extent {
                lba: 6144,
                blocks: 4096,
                status: 1
            },
        ]
    );
    // Room for two descriptors: condition 1, PARAMETER DATA LENGTH counts what was sent.
    let r = gls(&mut i, 0, 0, 0, 8 + 32, 0).await;
    let (cc, _, ext) = decode(&r.data).unwrap();
    assert_eq!((cc, ext.len()), (1, 2));
    assert_eq!(u32::from_be_bytes(r.data[0..4].try_into().unwrap()), 36);
    // Shorter than one descriptor: the header alone, still GOOD.
    let r = gls(&mut i, 0, 0, 0, 16, 0).await;
    assert_eq!((r.status, r.data.len()), (0, 8));
}

#[tokio::test]
async fn start_in_the_middle_of_an_extent_and_at_the_last_lba() {
    let (_d, emu) = setup();
    let mut i = connect(&emu, None, false).await;
    let (_, _, ext) = decode(&gls(&mut i, 4096 + 100, 0, 0, 4096, 0).await.data).unwrap();
    assert_eq!(
        ext[0],
        Extent {
            lba: 4196,
            blocks: 2048 - 100,
            status: 0
        }
    );
    let last = SIZE / 512 - 1;
    let (cc, _, ext) = decode(&gls(&mut i, last, 0, 0, 4096, 0).await.data).unwrap();
    assert_eq!(
        (cc, ext),
        (
            3,
            vec![Extent {
                lba: last,
                blocks: 1,
                status: 0
            }]
        )
    );
}

#[tokio::test]
async fn beyond_the_end_and_element_identifier_are_refused() {
    let (_d, emu) = setup();
    let mut i = connect(&emu, None, false).await;
    let r = gls(&mut i, SIZE / 512, 0, 0, 4096, 0).await;
    assert_eq!(
        (r.status, r.sense_code()),
        (2, Some((5, 0x21, 0))),
        "LBA OUT OF RANGE"
    );
    let r = gls(&mut i, u64::MAX, 0, 0, 4096, 0).await;
    assert_eq!(r.sense_code(), Some((5, 0x21, 0)));
    let r = gls(&mut i, 0, 0, 0, 4096, 7).await;
    assert_eq!(
        (r.status, r.sense_code()),
        (2, Some((5, 0x24, 0))),
        "INVALID FIELD IN CDB"
    );
    assert_eq!(
        &r.sense[15..18],
        &[0xc0, 0, 24],
        "field pointer at the ELEMENT IDENTIFIER"
    );
    // The session survives refused commands.
    assert_eq!(gls(&mut i, 0, 0, 0, 24, 0).await.status, 0);
}

/// The shape of Oracle's example: `sg_get_lba_status -b -T -t 1 -s 2097152 -m 4096` on 512-byte
/// blocks over a volume larger than the 1 GiB scan, with CHAP and CRC32C digests on.
#[tokio::test]
async fn oracle_example_shape_with_chap_and_digests() {
    let dir = tempfile::tempdir().unwrap();
    let size: u64 = 3 << 30;
    let extents = [
        (1 << 20, 64 << 10),
        ((1 << 30) - 4096, 8192),
        ((2 << 30) + (5 << 20), 4096),
    ];
    let file = sparse_image(dir.path(), "oracle.img", size, &extents, 3);
    let emu = Emulator::start(
        &file,
        &[
            "--read-only",
            "--chap-user",
            "backup",
            "--chap-secret",
            "a-secret-of-16ch",
        ],
    );
    let creds = ChapCredentials {
        user: "backup".into(),
        secret: "a-secret-of-16ch".into(),
    };
    let mut i = connect(&emu, Some(creds), true).await;
    let scan = 2_097_152u32;
    let mut lba = 0u64;
    let mut mapped = Vec::new();
    let mut scans = 0;
    while lba < size / 512 && scans < 8 {
        scans += 1;
        let r = gls(&mut i, lba, scan, 1, 4096, 0).await;
        let (cc, rtp, ext) = decode(&r.data).unwrap();
        assert!(rtp);
        assert!(ext.iter().all(|e| e.status == 3 || e.status == 1));
        assert_eq!(
            ext[0].lba, lba,
            "first descriptor starts at the requested LBA"
        );
        let end = ext.last().map(|e| e.lba + e.blocks).unwrap();
        assert_eq!(cc, if end < size / 512 { 2 } else { 3 });
        mapped.extend(
            ext.iter()
                .filter(|e| e.status == 3)
                .map(|e| (e.lba * 512, e.blocks * 512)),
        );
        lba = end;
    }
    assert_eq!(scans, 3, "three 1 GiB scans cover 3 GiB");
    // The extent straddling the 1 GiB boundary comes back in two scans' pieces.
    assert_eq!(
        mapped,
        vec![
            (1 << 20, 64 << 10),
            ((1 << 30) - 4096, 4096),
            (1 << 30, 4096),
            ((2 << 30) + (5 << 20), 4096)
        ]
    );
    i.logout().await.unwrap();
}

#[tokio::test]
async fn wrong_chap_secret_is_refused() {
    let (dir, _) = setup();
    let file = sparse_image(dir.path(), "chap.img", 1 << 20, &[], 1);
    let emu = Emulator::start(
        &file,
        &["--chap-user", "u", "--chap-secret", "right-secret"],
    );
    let opts = LoginOptions {
        initiator_name: "iqn.2026-11.io.blockdelta:test-initiator".into(),
        target_name: Some(emu.iqn.clone()),
        chap: Some(ChapCredentials {
            user: "u".into(),
            secret: "wrong-secret".into(),
        }),
        ..Default::default()
    };
    let err = Initiator::connect(emu.portal, &opts)
        .await
        .err()
        .expect("login must fail");
    assert!(
        err.to_string().contains("0x02/0x01"),
        "authentication failure expected, got {err}"
    );
}

#[tokio::test]
async fn block_size_4096_reports_in_4096_byte_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let file = sparse_image(dir.path(), "big.img", SIZE, &standard_extents(SIZE), 5);
    let emu = Emulator::start(&file, &["--read-only", "--block-size", "4096"]);
    let mut i = connect(&emu, None, false).await;
    let (_, _, ext) = decode(&gls(&mut i, 0, 0, 0, 4096, 0).await.data).unwrap();
    assert_eq!(ext, expected_all(4096));
}
