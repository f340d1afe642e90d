//! Acceptance item 2 of issue 2: libiscsi's conformance suite (`iscsi-test-cu`, Debian
//! libiscsi-bin 1.19) runs its SCSI and iSCSI families against the `target-emulator` binary on
//! a read-only export and, with `--dataloss`, on a writable scratch export, with zero failures.
//! The same runs then go against Debian's tgt on the same files, and ours must pass more tests.
//!
//! Two libiscsi quirks shape the runs on the read-only export:
//! - Without `--dataloss`, libiscsi 1.19's PERSISTENT RESERVE OUT and WRITE AND VERIFY helpers
//!   return failure before sending anything, so [`NEEDS_DATALOSS`] fail against any target.
//!   They are left out of the plain read-only run and covered with `--dataloss`: the
//!   reservation tests that do not write also on the read-only export ([`READ_ONLY_DATALOSS`],
//!   with ReadOnly.ReadOnlySBC, which only runs with `--dataloss` on a write-protected unit),
//!   and all of them on the writable export.
//! - Its MultipathIO tests need two paths to the unit: every run names the export twice, as
//!   libiscsi's multipath mode allows (each path logs in with its own initiator name).
//!
//! Skipped tests are printed with libiscsi's reason, as the README's table lists them.

mod common;

use common::{CuRun, CuVerdict, Emulator, Tgtd};
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest one `iscsi-test-cu` run may take; the SCSI family with `--dataloss` takes about
/// 30 s here (its RESERVE(6) tests sleep 3 s each).
const RUN_LIMIT: Duration = Duration::from_secs(600);
const SIZE: u64 = 64 << 20;

/// Tests libiscsi 1.19 fails without `--dataloss` on any target: its helpers refuse to send
/// PERSISTENT RESERVE OUT or WRITE AND VERIFY and report that as a failure.
const NEEDS_DATALOSS: &[&str] = &[
    "SCSI.PrinReadKeys.Truncate",
    "SCSI.ProutRegister.Simple",
    "SCSI.ProutReserve.*",
    "SCSI.WriteVerify10.Dpo",
    "SCSI.WriteVerify12.Dpo",
    "SCSI.WriteVerify16.Dpo",
];

/// What runs with `--dataloss` on the read-only export: write protection of every medium
/// write command, and the reservation tests that do not need a write to succeed.
const READ_ONLY_DATALOSS: &str = "SCSI.ReadOnly,SCSI.PrinReadKeys,SCSI.PrinServiceactionRange,\
SCSI.PrinReportCapabilities,SCSI.ProutRegister,SCSI.ProutReserve.Simple,\
SCSI.ProutReserve.Ownership*,SCSI.ProutClear,SCSI.ProutPreempt";

fn needs_dataloss(test: &str) -> bool {
    NEEDS_DATALOSS.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => test.starts_with(prefix),
        None => test == *p,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Export {
    ReadOnly,
    Writable,
}

struct Plan {
    label: &'static str,
    export: Export,
    dataloss: bool,
    selection: String,
}

fn plans() -> Vec<Plan> {
    let all = common::iscsi_test_cu_list();
    assert!(
        all.iter().any(|t| t.starts_with("SCSI.")) && all.iter().any(|t| t.starts_with("iSCSI.")),
        "iscsi-test-cu -l lists no SCSI or iSCSI tests"
    );
    vec![
        Plan {
            label: "read-only  SCSI",
            export: Export::ReadOnly,
            dataloss: false,
            selection: common::iscsi_test_cu_selection(&all, "SCSI", needs_dataloss),
        },
        Plan {
            label: "read-only  SCSI --dataloss (ReadOnly, PR)",
            export: Export::ReadOnly,
            dataloss: true,
            selection: READ_ONLY_DATALOSS.to_string(),
        },
        Plan {
            label: "read-only  iSCSI",
            export: Export::ReadOnly,
            dataloss: false,
            selection: "iSCSI".to_string(),
        },
        Plan {
            label: "writable   SCSI --dataloss",
            export: Export::Writable,
            dataloss: true,
            selection: "SCSI".to_string(),
        },
        Plan {
            label: "writable   iSCSI --dataloss",
            export: Export::Writable,
            dataloss: true,
            selection: "iSCSI".to_string(),
        },
    ]
}

/// Runs `plan` against `url`, given twice: two paths to the same unit.
fn run(plan: &Plan, url: &str) -> CuRun {
    let test = format!("--test={}", plan.selection);
    let mut args = vec![test.as_str()];
    if plan.dataloss {
        args.push("--dataloss");
    }
    common::iscsi_test_cu(&args, &[url.to_string(), url.to_string()], RUN_LIMIT)
}

fn line(label: &str, r: &CuRun) -> String {
    format!(
        "{label:<44} ran {:>3}  passed {:>3}  skipped {:>3}  failed {:>3}",
        r.tests.len(),
        r.passed(),
        r.skipped(),
        r.failed()
    )
}

#[test]
fn acceptance_2_libiscsi_suite_has_no_failures_and_passes_more_than_tgt() {
    common::require_tool("iscsi-test-cu", "libiscsi-bin");
    common::require_tool("tgtd", "tgt");
    common::require_tool("tgtadm", "tgt");
    let dir = tempfile::tempdir().expect("tempdir");
    let read_only = common::sparse_image(
        dir.path(),
        "ro.img",
        SIZE,
        &common::standard_extents(SIZE),
        2,
    );
    let writable = common::sparse_image(dir.path(), "rw.img", SIZE, &[], 3);
    let plans = plans();

    let ours: Vec<CuRun> = {
        let ro = Emulator::start(&read_only, &["--read-only"]);
        let rw = Emulator::start(&writable, &[]);
        plans
            .iter()
            .map(|p| {
                let r = run(
                    p,
                    &if p.export == Export::ReadOnly {
                        ro.url()
                    } else {
                        rw.url()
                    },
                );
                println!("target-emulator  {}", line(p.label, &r));
                r
            })
            .collect()
    };

    // Every skip with its reason, grouped the way the README lists them.
    let mut skips: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (p, r) in plans.iter().zip(&ours) {
        for t in &r.tests {
            if let CuVerdict::Skipped(reason) = &t.verdict {
                skips
                    .entry(format!("{} — {reason}", p.label.trim()))
                    .or_default()
                    .push(t.name.clone());
            }
        }
    }
    println!("\nskipped tests (run — libiscsi's reason: tests):");
    for (reason, tests) in &skips {
        println!("  {reason}: {}", tests.join(", "));
    }

    let failures: Vec<String> = plans
        .iter()
        .zip(&ours)
        .flat_map(|(p, r)| {
            r.failures()
                .into_iter()
                .map(move |t| format!("{}: {} {:?}", p.label.trim(), t.name, t.verdict))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "libiscsi conformance failures against target-emulator:\n{}",
        failures.join("\n")
    );

    let tgt: Vec<CuRun> = {
        let tgtd = Tgtd::start();
        let ro = tgtd.export("iqn.2026-11.io.blockdelta:tgt-ro", &read_only, true);
        let rw = tgtd.export("iqn.2026-11.io.blockdelta:tgt-rw", &writable, false);
        plans
            .iter()
            .map(|p| {
                let r = run(
                    p,
                    if p.export == Export::ReadOnly {
                        &ro
                    } else {
                        &rw
                    },
                );
                println!("tgt              {}", line(p.label, &r));
                r
            })
            .collect()
    };
    let ours_passed: usize = ours.iter().map(CuRun::passed).sum();
    let tgt_passed: usize = tgt.iter().map(CuRun::passed).sum();
    let tgt_failed: usize = tgt.iter().map(CuRun::failed).sum();
    println!(
        "\npassed (not skipped), all runs: target-emulator {ours_passed}, tgt {tgt_passed} \
         (tgt failed {tgt_failed})"
    );
    assert!(
        ours_passed > tgt_passed,
        "target-emulator passed {ours_passed} libiscsi tests, tgt {tgt_passed}"
    );
}

/// At 4096-byte logical blocks (the open-iscsi discovery issue) the writable export runs the
/// SCSI family with `--dataloss`, and only libiscsi's own ProutReserve.Access* tests may fail:
/// their helper writes a 512-byte buffer as one logical block, which a 4096-byte unit rightly
/// refuses. Anything else failing is ours.
#[test]
fn libiscsi_suite_at_4096_byte_blocks_fails_only_its_512_byte_reservation_writes() {
    common::require_tool("iscsi-test-cu", "libiscsi-bin");
    let dir = tempfile::tempdir().expect("tempdir");
    let writable = common::sparse_image(dir.path(), "rw4k.img", SIZE, &[], 5);
    let emulator = Emulator::start(&writable, &["--block-size", "4096"]);
    let plan = Plan {
        label: "writable 4096 SCSI --dataloss",
        export: Export::Writable,
        dataloss: true,
        selection: "SCSI".to_string(),
    };
    let r = run(&plan, &emulator.url());
    println!("target-emulator  {}", line(plan.label, &r));
    let unexpected: Vec<String> = r
        .failures()
        .into_iter()
        .filter(|t| {
            !t.name
                .trim_start_matches("SCSI.")
                .starts_with("ProutReserve.Access")
        })
        .map(|t| format!("{} {:?}", t.name, t.verdict))
        .collect();
    assert!(
        unexpected.is_empty(),
        "failures at 4096-byte blocks beyond ProutReserve.Access*:\n{}",
        unexpected.join("\n")
    );
    // 167 pass here (the 512-byte run's 173 less those six): a floor against regressions.
    assert!(r.passed() >= 160, "only {} tests passed", r.passed());
}
