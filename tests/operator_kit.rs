//! Acceptance 3 of the operator's-kit issue: `--log-format json` lines parse as JSON and
//! carry the request id; `systemd-analyze verify` accepts dist/blockdelta.service; shell
//! completions and the man page generate. (The sample config equals the defaults: a unit
//! test in src/config.rs.)

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::*;
use serde_json::Value;

#[test]
fn json_log_lines_parse_and_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &["--log-format", "json", "--log-file", log.to_str().unwrap()],
        &[("RUST_LOG", "info,blockdelta::api=debug")],
    );
    server.create_volume("logged", 1 << 20);
    server.cli_as("", &["volume", "list"]);
    server.json(&["volume", "list"]);
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!text.contains('\u{1b}'), "colour codes in a log file");
    // Every line of one call carries the same request id, and different calls different ones.
    let mut by_request: HashMap<String, Vec<&Value>> = HashMap::new();
    for l in &lines {
        if let Some(id) = l["span"]["request_id"].as_str() {
            by_request.entry(id.to_string()).or_default().push(l);
        }
    }
    assert!(by_request.len() >= 3, "{text}");
    for (id, ls) in &by_request {
        assert_eq!(id.len(), 16, "{id}");
        assert!(
            ls.iter().all(|l| l["span"]["method"]
                .as_str()
                .is_some_and(|m| m.starts_with('/'))),
            "{ls:?}"
        );
        assert!(ls.iter().any(|l| l["message"] == "answered"), "{ls:?}");
    }
    let refused = lines.iter().find(|l| l["message"] == "refused");
    assert!(
        refused.is_some(),
        "the call without a token was not logged: {text}"
    );
    let create = by_request
        .values()
        .find(|ls| ls[0]["span"]["method"] == "/blockdelta.v1.VolumeService/CreateVolume")
        .expect("CreateVolume's lines");
    assert!(create.len() >= 2, "{create:?}");
}

#[test]
fn the_systemd_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dist/blockdelta.service"
    ))
    .unwrap();
    // systemd-analyze checks that ExecStart's binary exists: point it at the one built here.
    let unit = unit.replace("/usr/local/bin/blockdelta", BIN);
    let path = dir.path().join("blockdelta.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("blockdelta.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {err}"
    );
}

#[test]
fn completions_and_the_man_page_generate() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("blockdelta") && text.contains("volume"),
            "{shell}"
        );
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let script = dir.path().join("blockdelta.bash");
            std::fs::write(&script, text.as_bytes()).unwrap();
            let ok = Command::new("bash")
                .arg("-n")
                .arg(&script)
                .status()
                .unwrap();
            assert!(ok.success(), "the bash completion script does not parse");
        }
    }
    let out = Command::new(BIN).arg("manpage").output().unwrap();
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && man.starts_with(".ie") || man.contains(".TH blockdelta"),
        "{man}"
    );
    assert!(man.contains(".SH NAME") && man.contains("serve"), "{man}");
}

/// Lists for people: a header row, names beside ids; `attach --chap` prints the iscsiadm
/// steps with the credentials filled in.
#[test]
fn lists_have_headers_and_names_and_attach_prints_the_chap_steps() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let (vol, _) = server.create_volume("people", 1 << 20);
    server.backup(&vol, &[]);
    let text = |args: &[&str]| String::from_utf8_lossy(&server.cli(args).stdout).to_string();
    let volumes = text(&["volume", "list"]);
    assert!(
        volumes.starts_with("ID ") && volumes.contains("NAME") && volumes.contains("people"),
        "{volumes}"
    );
    let backups = text(&["backup", "list"]);
    let mut lines = backups.lines();
    assert!(lines.next().unwrap().contains("VOLUME NAME"), "{backups}");
    let row = lines.next().unwrap();
    assert!(row.contains(&vol) && row.contains("people"), "{backups}");
    for args in [&["token", "list"][..], &["project", "list"]] {
        let out = text(args);
        assert!(
            out.lines().next().unwrap().contains("PROJECT"),
            "{args:?}: {out}"
        );
    }
    let attached = text(&["volume", "attach", &vol, "--chap"]);
    let secret = attached
        .lines()
        .find_map(|l| l.strip_prefix("chap secret: "))
        .expect("the secret")
        .to_string();
    assert!(
        attached.contains(&format!("-n node.session.auth.password -v {secret}"))
            && attached.contains("node.session.auth.authmethod -v CHAP")
            && attached.contains("--login"),
        "{attached}"
    );
}
