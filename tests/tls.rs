//! Acceptance 4 of the identity issue: gRPC over TLS with certificates `openssl` makes
//! here (a CA, a server certificate for 127.0.0.1, a client certificate), the Oracle
//! workflow through the CLI over it, plaintext refused, mutual TLS without a client
//! certificate refused, and `serve` refusing a non-loopback address without TLS (and
//! iSCSI without CHAP) unless told `--insecure-…`, before it binds anything.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ca.pem, server.pem/server.key (for 127.0.0.1 and localhost), client.pem/client.key.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=blockdelta test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        ),
        (
            "client",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        ),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

/// The CLI against `url` with extra global flags; (success, stdout, stderr).
fn cli(server: &Server, url: &str, flags: &[&str], args: &[&str]) -> (bool, String, String) {
    let o = Command::new(BIN)
        .arg("--server")
        .arg(url)
        .args(flags)
        .args(args)
        .env("BLOCKDELTA_TOKEN", server.token())
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn json1(server: &Server, url: &str, flags: &[&str], args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = cli(server, url, flags, &[&["--json"][..], args].concat());
    assert!(ok, "{args:?}: {err}");
    serde_json::from_str(out.lines().next().expect("a record")).unwrap()
}

#[test]
fn the_workflow_runs_over_tls_and_plaintext_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path();
    make_certificates(certs);
    let p = |f: &str| certs.join(f).to_str().unwrap().to_string();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server.key"),
        ],
    );
    let https = server.url.replace("http://", "https://");
    let ca = ["--ca-cert".to_string(), p("ca.pem")];
    let ca: Vec<&str> = ca.iter().map(String::as_str).collect();

    // Oracle's workflow: a volume, a full and an incremental backup, the delta between
    // them as a volume, its changed blocks, attach and detach.
    let v = json1(
        &server,
        &https,
        &ca,
        &["volume", "create", "--name", "tls", "--size", "4M"],
    );
    let path = s(&v["path"]);
    std::fs::write(&path, vec![1u8; 4 << 20]).unwrap();
    let full = s(&json1(&server, &https, &ca, &["backup", "create", "tls", "--wait"])["id"]);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[9u8; 8192], 40960).unwrap();
    }
    let inc = s(&json1(
        &server,
        &https,
        &ca,
        &["backup", "create", "tls", "--incremental", "--wait"],
    )["id"]);
    let delta = json1(
        &server,
        &https,
        &ca,
        &[
            "volume",
            "create",
            "--from-delta",
            "--first-backup",
            &full,
            "--second-backup",
            &inc,
        ],
    );
    assert_eq!(delta["changed_bytes"], 8192, "{delta}");
    let changed = json1(&server, &https, &ca, &["changed-blocks", &full, &inc]);
    assert_eq!(
        changed["extents"].as_array().map(Vec::len),
        Some(1),
        "{changed}"
    );
    let att = json1(
        &server,
        &https,
        &ca,
        &["volume", "attach", &s(&delta["id"])],
    );
    assert!(s(&att["target_iqn"]).contains(&s(&delta["id"])), "{att}");
    json1(
        &server,
        &https,
        &ca,
        &["volume", "detach", &s(&delta["id"])],
    );

    // Plaintext to a TLS port: refused.
    let (ok, _, err) = cli(&server, &server.url, &[], &["volume", "list"]);
    assert!(!ok, "a plaintext call was answered");
    assert!(err.starts_with("error: "), "{err}");
    // TLS without the CA: the server's certificate is not trusted.
    let (ok, _, err) = cli(&server, &https, &[], &["volume", "list"]);
    assert!(!ok && err.contains("--ca-cert"), "{err}");
    let (ok, _, _) = cli(
        &server,
        &https,
        &["--ca-cert", &p("client.pem")],
        &["volume", "list"],
    );
    assert!(!ok, "a certificate signed by an unknown CA was trusted");
}

#[test]
fn mutual_tls_needs_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path();
    make_certificates(certs);
    let p = |f: &str| certs.join(f).to_str().unwrap().to_string();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server.key"),
            "--tls-client-ca",
            &p("ca.pem"),
        ],
    );
    let https = server.url.replace("http://", "https://");
    let (ok, _, err) = cli(
        &server,
        &https,
        &["--ca-cert", &p("ca.pem")],
        &["volume", "list"],
    );
    assert!(!ok, "mutual TLS answered a client without a certificate");
    assert!(err.starts_with("error: "), "{err}");
    let (ok, _, err) = cli(
        &server,
        &https,
        &[
            "--ca-cert",
            &p("ca.pem"),
            "--client-cert",
            &p("client.pem"),
            "--client-key",
            &p("client.key"),
        ],
        &["volume", "list"],
    );
    assert!(ok, "{err}");
}

#[test]
fn serve_refuses_non_loopback_addresses_without_tls_or_chap() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, says) in [
        (
            &[
                "--grpc-listen",
                "0.0.0.0:0",
                "--iscsi-listen",
                "127.0.0.1:0",
            ][..],
            "without TLS",
        ),
        (
            &[
                "--grpc-listen",
                "127.0.0.1:0",
                "--iscsi-listen",
                "0.0.0.0:0",
            ][..],
            "without CHAP",
        ),
    ] {
        let data = dir.path().join("never");
        let out = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(&data)
            .args(flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} started");
        assert!(
            err.contains(says) && err.contains("--insecure-"),
            "{flags:?}: {err}"
        );
        assert!(!data.exists(), "a refused start left {}", data.display());
    }
}
