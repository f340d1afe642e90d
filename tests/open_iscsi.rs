//! Oracle's step 2 with open-iscsi's own tools (the open-iscsi discovery issue): in the QEMU
//! guest (shared/harness; 10.0.2.2 is this machine's loopback), `iscsid` + `iscsiadm` run the
//! whole life cycle the README shows, against a delta volume and against a writable volume:
//! SendTargets discovery (with discovery CHAP for the delta volume, without for the other),
//! the node's CHAP settings, login, `sg_get_lba_status -b -T -t 1 -s 2097152 -m 32768`, `dd`,
//! logout, login again, the server restarted under a logged-in session (which recovers within
//! the replacement timeout), detach refused while logged in and accepted after logout; then
//! the same volume attached at 4096-byte logical blocks: capacity, GET LBA STATUS in 4096-byte
//! LBAs, reads.
//!
//! The server advertises `10.0.2.2:PORT` (`--iscsi-advertise`): it listens on 127.0.0.1, which
//! in the guest is the guest itself.

mod common;
#[path = "../target-emulator/tests/guest/mod.rs"]
mod guest;

use std::collections::BTreeSet;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::delta::*;
use common::*;
use guest::{brief_descriptors, section};

const SIZE: u64 = 256 << 20;
const GUEST_INITIATOR: &str = "iqn.2026-11.io.blockdelta:guest";
const DISCOVERY_USER: &str = "discovery";
const DISCOVERY_SECRET: &str = "disc-secret-0123";

/// The README's open-iscsi commands, as the guest runs them: discovery, CHAP on the node,
/// login. `$PORTAL`, `$TARGET`, `$CHAP_USER` and `$CHAP_SECRET` come from `volume attach`.
const README_DISCOVERY: &str = "iscsiadm -m discovery -t st -p $PORTAL";
const README_DISCOVERY_CHAP: &str = r#"iscsiadm -m discoverydb -t st -p $PORTAL -o new
iscsiadm -m discoverydb -t st -p $PORTAL -o update -n discovery.sendtargets.auth.authmethod -v CHAP
iscsiadm -m discoverydb -t st -p $PORTAL -o update -n discovery.sendtargets.auth.username -v $DISCOVERY_USER
iscsiadm -m discoverydb -t st -p $PORTAL -o update -n discovery.sendtargets.auth.password -v $DISCOVERY_SECRET
iscsiadm -m discoverydb -t st -p $PORTAL --discover"#;
const README_NODE_CHAP: &str = r#"iscsiadm -m node -T $TARGET -p $PORTAL -o update -n node.session.auth.authmethod -v CHAP
iscsiadm -m node -T $TARGET -p $PORTAL -o update -n node.session.auth.username -v $CHAP_USER
iscsiadm -m node -T $TARGET -p $PORTAL -o update -n node.session.auth.password -v $CHAP_SECRET"#;
/// Discovery again once the discovery record holds the CHAP settings.
const README_REDISCOVERY_CHAP: &str = "iscsiadm -m discoverydb -t st -p $PORTAL --discover";
const README_LOGIN: &str = "iscsiadm -m node -T $TARGET -p $PORTAL --login";
const README_SCAN: &str = "sg_get_lba_status -b -T -t 1 -s 2097152 -m 32768 $DISK";
const README_LOGOUT: &str = "iscsiadm -m node -T $TARGET -p $PORTAL --logout";

/// Shell functions the guest scripts share: the disk of the logged-in session, and waiting
/// for it to come and go (each bounded).
const GUEST_HELPERS: &str = r#"
session_disk() { iscsiadm -m session -P 3 2>/dev/null | sed -n 's/.*Attached scsi disk \([a-z]*\).*/\1/p' | head -1; }
wait_disk() {
  for i in $(seq 1 30); do d=$(session_disk); [ -n "$d" ] && [ -b /dev/$d ] && DISK=/dev/$d && return 0; sleep 1; done
  echo "no disk after login"; return 1
}
wait_gone() { for i in $(seq 1 30); do [ -b "$DISK" ] || return 0; sleep 1; done; echo "$DISK still there"; return 1; }
read_sha() { dd if=$DISK bs=4096 skip=$1 count=$2 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1; }
"#;

/// What one attachment is, for the guest: the shell lines that set the README's variables.
fn attachment_vars(a: &Attached) -> String {
    let chap = a.chap.as_ref().expect("CHAP credentials");
    format!(
        "PORTAL={}\nTARGET={}\nCHAP_USER={}\nCHAP_SECRET={}\n",
        a.portal, a.target, chap.user, chap.secret
    )
}

/// The guest's lines for one attachment: discovery, node CHAP, login, capacity, the scan,
/// then `extra` (reads and the host steps), then logout.
fn login_scan(discovery: &str, tag: &str, extra: &str) -> String {
    format!(
        r#"
echo "== discovery-{tag}"; {discovery}
{README_NODE_CHAP}
iscsiadm -m node -T $TARGET -p $PORTAL -o update -n node.session.timeo.replacement_timeout -v 30
echo "== login-{tag}"; {README_LOGIN}
wait_disk
echo "== readcap-{tag}"; sg_readcap -l $DISK
echo "== gls-{tag}"; {README_SCAN}
{extra}
echo "== logout-{tag}"; {README_LOGOUT}
wait_gone
"#
    )
}

/// Every descriptor a whole-medium scan with report type 1 returns: `mapped` byte extents
/// (ascending, coalesced) as status 3, the gaps as 1, in `block_size` LBAs.
fn want_descriptors(mapped: &[(u64, u64)], block_size: u64) -> Vec<(u64, u64, u8)> {
    let mut want = Vec::new();
    let mut at = 0;
    for &(off, len) in mapped {
        if off > at {
            want.push((at / block_size, (off - at) / block_size, 1u8));
        }
        want.push((off / block_size, len / block_size, 3u8));
        at = off + len;
    }
    if at < SIZE {
        want.push((at / block_size, (SIZE - at) / block_size, 1));
    }
    want
}

fn sha256_of(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The data extents of a sparse file (SEEK_DATA / SEEK_HOLE), in bytes.
fn file_extents(path: &Path) -> Vec<(u64, u64)> {
    let f = std::fs::File::open(path).unwrap();
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut at: i64 = 0;
    loop {
        // SAFETY: lseek on a file descriptor we own.
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 || data as u64 >= SIZE {
            return out;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        out.push((data as u64, (hole - data) as u64));
        at = hole;
    }
}

/// The server of one test: gRPC and iSCSI on fixed free ports, so a restart comes back on
/// the same portal, and the iSCSI portal advertised as the guest reaches it.
struct Fixture {
    server: Option<Server>,
    flags: Vec<String>,
    data_dir: PathBuf,
}

impl Fixture {
    fn start(dir: &Path, extra: &[&str]) -> Fixture {
        let [grpc_port, iscsi_port] = free_ports();
        let mut flags: Vec<String> = vec![
            "--grpc-listen".into(),
            format!("127.0.0.1:{grpc_port}"),
            "--iscsi-listen".into(),
            format!("127.0.0.1:{iscsi_port}"),
            "--iscsi-advertise".into(),
            format!("10.0.2.2:{iscsi_port}"),
        ];
        flags.extend(extra.iter().map(|s| s.to_string()));
        let data_dir = dir.join("data");
        let mut f = Fixture {
            server: None,
            flags,
            data_dir,
        };
        f.server = Some(f.spawn());
        f
    }

    fn spawn(&self) -> Server {
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        Server::start_with(&self.data_dir, &flags)
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    /// SIGTERM, then the same server again on the same ports and data dir.
    fn restart(&mut self) -> String {
        let status = self.server.take().expect("server running").stop();
        self.server = Some(self.spawn());
        format!("restarted (old server exited {status})")
    }

    fn attach(&self, volume: &str, block_size: &str) -> Attached {
        Attached::from_json(&self.server().json1(&[
            "volume",
            "attach",
            volume,
            "--chap",
            "--initiator",
            GUEST_INITIATOR,
            "--block-size",
            block_size,
        ]))
    }

    /// The host steps both tests share; `None` for a step this one does not know.
    fn shared_step(&mut self, volume: &str, name: &str) -> Option<String> {
        Some(match name {
            "detach-refused" => {
                let msg = self
                    .server()
                    .fails(&["volume", "detach", volume], "FAILED_PRECONDITION");
                format!("refused: {}", msg.trim())
            }
            "restart" => self.restart(),
            "detach-accepted" => {
                let out = self.server().cli(&["volume", "detach", volume]);
                if out.status.success() {
                    "detached".into()
                } else {
                    format!("FAILED: {}", String::from_utf8_lossy(&out.stderr).trim())
                }
            }
            "attach-4096" => attachment_vars(&self.attach(volume, "4096")).replace('\n', " "),
            _ => return None,
        })
    }
}

/// Checks the shared host steps' replies in the guest's log.
fn assert_host_steps(log: &str) {
    assert!(
        section(log, "== host detach-refused:").contains("FAILED_PRECONDITION"),
        "detach while logged in was not refused:\n{log}"
    );
    assert!(
        section(log, "== host restart:").contains("restarted"),
        "{log}"
    );
    // The restart broke the connection and the kernel recovered the same session (sid 2,
    // the second login's) rather than failing it.
    assert!(
        section(log, "== kernel-log").contains("detected conn error"),
        "no connection error seen while the server restarted:\n{log}"
    );
    assert!(
        section(log, "== session-after").contains("[2]"),
        "the session after the restart:\n{log}"
    );
    assert!(
        section(log, "== host detach-accepted:").contains("detached"),
        "detach after logout was refused:\n{log}"
    );
}

fn assert_capacity(log: &str, tag: &str, block_size: u64) {
    let cap = section(log, &format!("== readcap-{tag}"));
    assert!(
        cap.contains(&format!("Logical block length={block_size} bytes")),
        "capacity at {block_size}:\n{cap}"
    );
    assert!(
        cap.contains(&format!("Last LBA={}", SIZE / block_size - 1)),
        "capacity at {block_size}:\n{cap}"
    );
}

fn assert_scan(log: &str, tag: &str, want: &[(u64, u64, u8)]) {
    let gls = section(log, &format!("== gls-{tag}"));
    assert!(gls.contains("Completion condition=3"), "{gls}");
    assert_eq!(
        brief_descriptors(gls),
        want,
        "sg_get_lba_status ({tag}):\n{gls}"
    );
}

/// The guest's script after the attachment variables: the 512-byte life cycle, then the
/// 4096-byte attachment. `reads` are the `dd` checks of each phase (`$1` = phase tag).
fn lifecycle_script(
    discovery: &str,
    rediscovery: &str,
    reads: impl Fn(&str) -> String,
    writes: &str,
) -> String {
    let first = format!(
        "{reads_a}\n{writes}\nhost detach-refused",
        reads_a = reads("a")
    );
    let relogin = format!(
        r#"{reads_b}
host restart
for i in $(seq 1 60); do dd if=$DISK bs=4096 count=1 iflag=direct of=/dev/null 2>/dev/null && break; sleep 1; done
echo "== recovered after $i s"
echo "== kernel-log"; dmesg | grep -E "conn error|recovery" | tail -4
echo "== session-after"; iscsiadm -m session
{reads_c}"#,
        reads_b = reads("b"),
        reads_c = reads("c")
    );
    format!(
        r#"{GUEST_HELPERS}
iscsid -f > /tmp/iscsid.log 2>&1 &
sleep 1
{a}
{b}
host detach-accepted
host attach-4096
eval "$(echo "$HOST_REPLY" | tr ' ' '\n')"
{c}
echo "== end"
"#,
        a = login_scan(discovery, "512", &first),
        b = login_scan(README_DISCOVERY_NOOP, "again", &relogin),
        c = login_scan(rediscovery, "4096", &reads("d")),
    )
}

/// A second login needs no new discovery: the node record is kept.
const README_DISCOVERY_NOOP: &str = "iscsiadm -m node -T $TARGET -p $PORTAL";

#[test]
fn open_iscsi_life_cycle_on_a_delta_volume_with_discovery_chap() {
    let dir = tempfile::tempdir().unwrap();
    let mut fx = Fixture::start(
        dir.path(),
        &[
            "--iscsi-discovery-chap-user",
            DISCOVERY_USER,
            "--iscsi-discovery-chap-secret",
            DISCOVERY_SECRET,
        ],
    );
    let mut m = SparseModel::create(&dir.path().join("vol.img"), SIZE, 41);
    for i in 0..40 {
        let b = (i * 1543) % m.tracking_blocks();
        m.fill(b, 4, i % 2 == 0);
    }
    let vol = fx.server().json1(&[
        "volume",
        "register",
        "--name",
        "oi",
        "--path",
        m.path.to_str().unwrap(),
    ]);
    let vol_id = s(&vol["id"]);
    let full = s(&fx.server().backup(&vol_id, &[])["id"]);
    let before = m.blocks.clone();
    m.fill(100, 3, false);
    m.fill(30_000, 16, true);
    m.fill(45_000, 1, false);
    m.fill(m.tracking_blocks() - 1, 1, false);
    let inc = s(&fx.server().backup(&vol_id, &["--incremental"])["id"]);
    let changed: BTreeSet<u64> = diff(&before, &m.blocks);
    let expected = coarse_extents(&changed, 4096, SIZE);
    let delta = s(&fx.server().create_delta(&full, &inc, &[])["id"]);
    let att = fx.attach(&delta, "512");
    assert_eq!(att.portal.ip().to_string(), "10.0.2.2", "advertised portal");

    let vars = format!(
        "{}DISCOVERY_USER={DISCOVERY_USER}\nDISCOVERY_SECRET={DISCOVERY_SECRET}\n",
        attachment_vars(&att)
    );
    let reads = |tag: &str| format!(r#"echo "== dd-{tag}"; read_sha 30000 16"#);
    let script = format!(
        "{vars}{}",
        lifecycle_script(README_DISCOVERY_CHAP, README_REDISCOVERY_CHAP, reads, "")
    );
    let delta_id = delta.clone();
    let log = guest::run_with_host(
        env!("CARGO_MANIFEST_DIR"),
        dir.path(),
        |_| script,
        |name| {
            fx.shared_step(&delta_id, name)
                .unwrap_or_else(|| format!("unknown step {name}"))
        },
    );

    println!("{log}");
    let discovered = section(&log, "== discovery-512");
    assert!(
        discovered.contains(&format!("{},1 {}", att.portal, att.target)),
        "SendTargets with discovery CHAP:\n{discovered}"
    );
    assert_host_steps(&log);
    let sha = sha256_of(
        &(30_000..30_016)
            .flat_map(|b| m.block(b))
            .collect::<Vec<u8>>(),
    );
    for tag in ["a", "b", "c", "d"] {
        assert!(
            section(&log, &format!("== dd-{tag}")).contains(&sha),
            "dd of a changed extent ({tag}):\n{log}"
        );
    }
    assert_capacity(&log, "512", 512);
    assert_scan(&log, "512", &want_descriptors(&expected, 512));
    assert_scan(&log, "again", &want_descriptors(&expected, 512));
    assert_capacity(&log, "4096", 4096);
    assert_scan(&log, "4096", &want_descriptors(&expected, 4096));
}

#[test]
fn open_iscsi_life_cycle_on_a_writable_volume() {
    let dir = tempfile::tempdir().unwrap();
    let mut fx = Fixture::start(dir.path(), &[]);
    let mut m = SparseModel::create(&dir.path().join("rw.img"), SIZE, 43);
    for i in 0..30 {
        let b = (i * 2029) % m.tracking_blocks();
        m.fill(b, 3, i % 3 == 0);
    }
    m.fill(1000, 1, false);
    let vol = fx.server().json1(&[
        "volume",
        "register",
        "--name",
        "rw",
        "--path",
        m.path.to_str().unwrap(),
    ]);
    let vol_id = s(&vol["id"]);
    let before = file_extents(&m.path);
    let att = fx.attach(&vol_id, "512");

    // The guest copies block 1000 to block 50000 (a hole) through the kernel's block layer.
    let writes = r#"echo "== write"; dd if=$DISK bs=4096 skip=1000 count=1 iflag=direct 2>/dev/null | dd of=$DISK bs=4096 seek=50000 count=1 oflag=direct 2>/dev/null && echo WRITTEN"#;
    let reads = |tag: &str| {
        format!(r#"echo "== dd-{tag}"; read_sha 1000 1; echo "== copy-{tag}"; read_sha 50000 1"#)
    };
    let script = format!(
        "{}{}",
        attachment_vars(&att),
        lifecycle_script(README_DISCOVERY, README_DISCOVERY, reads, writes)
    );
    let vol_for_steps = vol_id.clone();
    let log = guest::run_with_host(
        env!("CARGO_MANIFEST_DIR"),
        dir.path(),
        |_| script,
        |name| {
            fx.shared_step(&vol_for_steps, name)
                .unwrap_or_else(|| format!("unknown step {name}"))
        },
    );

    println!("{log}");
    let discovered = section(&log, "== discovery-512");
    assert!(
        discovered.contains(&format!("{},1 {}", att.portal, att.target)),
        "SendTargets:\n{discovered}"
    );
    assert_host_steps(&log);
    assert!(section(&log, "== write").contains("WRITTEN"), "{log}");
    let block = m.block(1000);
    let sha = sha256_of(&block);
    for tag in ["a", "b", "c", "d"] {
        assert!(
            section(&log, &format!("== dd-{tag}")).contains(&sha),
            "{log}"
        );
    }
    for tag in ["b", "c", "d"] {
        assert!(
            section(&log, &format!("== copy-{tag}")).contains(&sha),
            "the written block ({tag}):\n{log}"
        );
    }
    // The write reached the file, durably, and made its block allocated.
    let mut on_disk = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(&m.path).unwrap(),
        &mut on_disk,
        50_000 * 4096,
    )
    .unwrap();
    assert_eq!(on_disk, block, "block 50000 of the volume file");
    assert_capacity(&log, "512", 512);
    assert_scan(&log, "512", &want_descriptors(&before, 512));
    let after = file_extents(&m.path);
    assert_scan(&log, "again", &want_descriptors(&after, 512));
    assert_capacity(&log, "4096", 4096);
    assert_scan(&log, "4096", &want_descriptors(&after, 4096));
}
