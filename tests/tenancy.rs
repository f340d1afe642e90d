//! Acceptance 3 and 5 of the identity issue: host paths only an admin may use, only under
//! the operator's volume roots, after canonicalisation; quotas refuse what goes over a
//! limit (naming it), creating nothing, hold under concurrent requests, and count what
//! exists after deletes and failures.

mod common;

use std::time::Duration;

use blockdelta::api::pb;
use blockdelta::api::pb::backup_service_client::BackupServiceClient;
use common::postgres::CatalogKind;
use common::*;
use serde_json::Value;

fn member_of(server: &Server, project: &str) -> String {
    server.json1(&["project", "create", project]);
    s(&server.json1(&["--project", project, "token", "create", "--role", "member"])["token"])
}

/// Runs the CLI with `token`; (success, stdout + stderr).
fn as_token(server: &Server, token: &str, args: &[&str]) -> (bool, String) {
    let o = server.cli_as(token, args);
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

fn refused(server: &Server, token: &str, args: &[&str], code: &str, says: &str) {
    let (ok, out) = as_token(server, token, args);
    assert!(!ok, "{args:?} was accepted: {out}");
    assert!(
        out.contains(code) && out.contains(says),
        "{args:?}: expected {code} naming {says:?}, got {out}"
    );
}

#[test]
fn host_paths_are_an_admins_and_only_under_volume_roots() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let inside = root.join("disk.img");
    std::fs::File::create(&inside)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let outside = dir.path().join("secret.img");
    std::fs::File::create(&outside)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let link = root.join("link.img");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let root_s = root.to_str().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &["--volume-root", root_s]);
    let admin = server.token();
    let member = member_of(&server, "p");

    let register = |token: &str, name: &str, path: &str| {
        as_token(
            &server,
            token,
            &[
                "--json", "volume", "register", "--name", name, "--path", path,
            ],
        )
    };
    for (path, says) in [
        ("/etc/shadow", "/etc/shadow"),
        ("/dev/mem", "/dev/mem"),
        (link.to_str().unwrap(), "link.img"),
        (&format!("{root_s}/../secret.img"), "secret.img"),
    ] {
        let (ok, out) = register(&admin, "x", path);
        assert!(
            !ok && out.contains("PERMISSION_DENIED") && out.contains(says),
            "{path}: {out}"
        );
    }
    let (ok, out) = register(&member, "x", inside.to_str().unwrap());
    assert!(
        !ok && out.contains("PERMISSION_DENIED"),
        "a member registered a host path: {out}"
    );
    assert!(
        server.json(&["volume", "list"]).is_empty(),
        "a refused register created something"
    );

    // An admin may, inside a root, for a project; that project's member backs it up but
    // may not restore onto the host path, only to a new volume.
    let v = server.json1(&[
        "--project",
        "p",
        "volume",
        "register",
        "--name",
        "host",
        "--path",
        inside.to_str().unwrap(),
    ]);
    assert_eq!(v["project"], "p");
    let (ok, out) = as_token(
        &server,
        &member,
        &["--json", "backup", "create", "host", "--wait"],
    );
    assert!(ok, "{out}");
    let backup: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let id = s(&backup["id"]);
    refused(
        &server,
        &member,
        &["backup", "restore", &id, "--volume", "host"],
        "PERMISSION_DENIED",
        "host",
    );
    let (ok, out) = as_token(
        &server,
        &member,
        &["--json", "backup", "restore", &id, "--wait"],
    );
    assert!(ok, "{out}");
    // Without any root configured, nothing may be registered, not even by an admin.
    let bare = tempfile::tempdir().unwrap();
    let strict = Server::start_with(
        &bare.path().join("data"),
        &["--volume-root", "/nonexistent-root"],
    );
    let (ok, out) = as_token(
        &strict,
        &strict.token(),
        &[
            "volume",
            "register",
            "--name",
            "x",
            "--path",
            inside.to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("PERMISSION_DENIED"), "{out}");
}

/// `quota show --usage` as (limit, in use) per resource.
fn usage(server: &Server, project: &str) -> Value {
    server.json1(&["quota", "show", project, "--usage"])
}

on_both_catalogs!(quotas_refuse_naming_the_limit_and_count_what_exists);
fn quotas_refuse_naming_the_limit_and_count_what_exists(catalog: CatalogKind) {
    let catalog = catalog.catalog();
    let dir = tempfile::tempdir().unwrap();
    let server = catalog.start(&dir.path().join("data"), &[], &[]);
    let member = member_of(&server, "q");
    let run = |args: &[&str]| -> Value {
        let (ok, out) = as_token(&server, &member, &[&["--json"][..], args].concat());
        assert!(ok, "{args:?}: {out}");
        serde_json::from_str(out.lines().next().unwrap()).unwrap()
    };
    server.json1(&["quota", "set", "q", "--backups", "3", "--volumes", "2"]);
    let vol = s(&run(&["volume", "create", "--name", "v", "--size", "1M"])["id"]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(s(&run(&["backup", "create", &vol, "--wait"])["id"]));
    }
    refused(
        &server,
        &member,
        &["backup", "create", &vol],
        "RESOURCE_EXHAUSTED",
        "quota backups of project q exceeded: limit 3, in use 3",
    );
    assert_eq!(usage(&server, "q")["backups"]["in_use"], 3);
    run(&["volume", "create", "--name", "w", "--size", "1M"]);
    refused(
        &server,
        &member,
        &["volume", "create", "--name", "x", "--size", "1M"],
        "RESOURCE_EXHAUSTED",
        "quota volumes",
    );
    // A delete gives its share back.
    run(&["backup", "delete", &ids.pop().unwrap()]);
    let start = std::time::Instant::now();
    while usage(&server, "q")["backups"]["in_use"] != 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the deleted backup still counts"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    run(&["backup", "create", &vol, "--wait"]);

    // backup_gigabytes counts volume sizes: 1 GiB holds one 600 MiB volume's backup, not two.
    let big = member_of(&server, "g");
    server.json1(&["quota", "set", "g", "--backup-gigabytes", "1"]);
    let mut vols = Vec::new();
    for name in ["one", "two"] {
        let (ok, out) = as_token(
            &server,
            &big,
            &[
                "--json", "volume", "create", "--name", name, "--size", "600M",
            ],
        );
        assert!(ok, "{out}");
        vols.push(s(&serde_json::from_str::<Value>(
            out.lines().next().unwrap(),
        )
        .unwrap()["id"]));
    }
    let (ok, out) = as_token(&server, &big, &["backup", "create", &vols[0], "--wait"]);
    assert!(ok, "{out}");
    refused(
        &server,
        &big,
        &["backup", "create", &vols[1]],
        "RESOURCE_EXHAUSTED",
        "quota backup_gigabytes of project g exceeded: limit 1 GiB",
    );
    let u = usage(&server, "g");
    assert_eq!(
        (u["backups"]["in_use"].clone(), u["backup_bytes"].clone()),
        (1.into(), (600u64 << 20).into()),
        "{u}"
    );
}

on_both_catalogs!(async concurrent_requests_cannot_exceed_a_limit_together);
async fn concurrent_requests_cannot_exceed_a_limit_together(catalog: CatalogKind) {
    let catalog = catalog.catalog();
    let dir = tempfile::tempdir().unwrap();
    let server = catalog.start(&dir.path().join("data"), &[], &[]);
    let member = member_of(&server, "c");
    server.json1(&["quota", "set", "c", "--backups", "5"]);
    let mut vols = Vec::new();
    for i in 0..20 {
        let (ok, out) = as_token(
            &server,
            &member,
            &[
                "--json",
                "volume",
                "create",
                "--name",
                &format!("v{i}"),
                "--size",
                "64K",
            ],
        );
        assert!(ok, "{out}");
        vols.push(s(&serde_json::from_str::<Value>(
            out.lines().next().unwrap(),
        )
        .unwrap()["id"]));
    }
    let calls = vols.into_iter().map(|v| {
        let (url, token) = (server.url.clone(), member.clone());
        tokio::spawn(async move {
            let mut c = BackupServiceClient::new(channel_as(&url, &token).await);
            c.create_backup(pb::CreateBackupRequest {
                volume: v,
                ..Default::default()
            })
            .await
        })
    });
    let mut created = 0;
    let mut exhausted = 0;
    for call in calls.collect::<Vec<_>>() {
        match call.await.unwrap() {
            Ok(_) => created += 1,
            Err(st) if st.code() == tonic::Code::ResourceExhausted => exhausted += 1,
            Err(st) => panic!("unexpected {st:?}"),
        }
    }
    assert_eq!((created, exhausted), (5, 15));
    let listed = server.json(&["--project", "c", "backup", "list"]);
    assert_eq!(listed.len(), 5, "{listed:?}");
}

#[cfg(feature = "failpoints")]
on_both_catalogs!(a_failed_backup_gives_its_quota_back);
/// A failed backup gives its usage back: it stays listed as `error`, but counts no more.
#[cfg(feature = "failpoints")]
fn a_failed_backup_gives_its_quota_back(catalog: CatalogKind) {
    let catalog = catalog.catalog();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = catalog.start(&data, &[], &[("FAILPOINTS", "repo.pack.write=return")]);
    let member = member_of(&server, "f");
    server.json1(&["quota", "set", "f", "--backups", "1"]);
    let (ok, out) = as_token(
        &server,
        &member,
        &["--json", "volume", "create", "--name", "v", "--size", "1M"],
    );
    assert!(ok, "{out}");
    let vol = "v";
    std::fs::write(
        server.json1(&["--project", "f", "volume", "show", vol])["path"]
            .as_str()
            .unwrap(),
        vec![7u8; 1 << 20],
    )
    .unwrap();
    let (_, out) = as_token(
        &server,
        &member,
        &["--json", "backup", "create", vol, "--wait"],
    );
    assert!(
        out.contains("error"),
        "the injected write fault did not fail the backup: {out}"
    );
    let u = usage(&server, "f");
    assert_eq!(u["backups"]["in_use"], 0, "{u}");
    let listed = server.json(&["--project", "f", "backup", "list"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "error");
}

/// `delta_enabled` per project (Oracle: "not enabled for the tenancy" is NOT_FOUND), the
/// server-wide setting its default.
#[test]
fn delta_volumes_are_a_per_project_setting() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &["--delta-enabled", "false"]);
    let on = member_of(&server, "on");
    server.json1(&["project", "set", "on", "--delta-enabled", "true"]);
    let off = member_of(&server, "off");
    for (token, project, allowed) in [(&on, "on", true), (&off, "off", false)] {
        let run = |args: &[&str]| -> Value {
            let (ok, out) = as_token(&server, token, &[&["--json"][..], args].concat());
            assert!(ok, "{project} {args:?}: {out}");
            serde_json::from_str(out.lines().next().unwrap()).unwrap()
        };
        let vol = s(&run(&["volume", "create", "--name", "v", "--size", "1M"])["id"]);
        let full = s(&run(&["backup", "create", &vol, "--wait"])["id"]);
        let inc = s(&run(&["backup", "create", &vol, "--incremental", "--wait"])["id"]);
        let args = [
            "volume",
            "create",
            "--from-delta",
            "--first-backup",
            &full,
            "--second-backup",
            &inc,
        ];
        if allowed {
            run(&args);
        } else {
            refused(&server, token, &args, "NOT_FOUND", "not enabled");
        }
    }
    let listed = server.json(&["project", "list"]);
    let setting =
        |name: &str| listed.iter().find(|p| p["name"] == name).unwrap()["delta_enabled"].clone();
    assert_eq!((setting("on"), setting("off")), (true.into(), false.into()));
}
