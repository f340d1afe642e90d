//! Acceptance item 2 of the delta-volume issue: every row of DESIGN.md §6, through
//! the CLI and through gRPC, gives its code and a message that names the problem,
//! and creates nothing.

mod common;

use blockdelta::api::pb;
use blockdelta::api::pb::volume_service_client::VolumeServiceClient;
use common::delta::SparseModel;
use common::*;
use tonic::Code;

/// One request of the table: the CLI flags and the same request over gRPC.
struct Row {
    what: &'static str,
    first: String,
    second: String,
    change_block_size: u64,
    source_type: &'static str,
    vpus_per_gb: Option<i64>,
    code: Code,
    cli_code: &'static str,
    /// Words the message must contain.
    says: String,
}

impl Row {
    fn new(
        what: &'static str,
        first: &str,
        second: &str,
        code: Code,
        cli_code: &'static str,
        says: &str,
    ) -> Row {
        Row {
            what,
            first: first.to_string(),
            second: second.to_string(),
            change_block_size: 4096,
            source_type: "volumeBackupDelta",
            vpus_per_gb: None,
            code,
            cli_code,
            says: says.to_string(),
        }
    }

    fn cli_args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "volume",
            "create",
            "--from-delta",
            "--first-backup",
            &self.first,
            "--second-backup",
            &self.second,
            "--change-block-size",
            &self.change_block_size.to_string(),
            "--source-type",
            self.source_type,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(v) = self.vpus_per_gb {
            a.push("--vpus-per-gb".into());
            a.push(v.to_string());
        }
        a
    }

    fn request(&self) -> pb::CreateVolumeRequest {
        pb::CreateVolumeRequest {
            name: String::new(),
            size: 0,
            source_details: Some(pb::VolumeSourceDetails {
                r#type: self.source_type.into(),
                first_backup_id: self.first.clone(),
                second_backup_id: self.second.clone(),
                change_block_size_in_bytes: self.change_block_size,
            }),
            vpus_per_gb: self.vpus_per_gb,
        }
    }

    /// Through the CLI (non-zero exit, code name and message on stderr) and gRPC.
    async fn check(&self, server: &Server) {
        let args = self.cli_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = server.fails(&args, self.cli_code);
        assert!(
            stderr.contains(&self.says),
            "{}: CLI message {stderr:?} does not say {:?}",
            self.what,
            self.says
        );
        let mut c = VolumeServiceClient::new(server.channel().await);
        let st = c.create_volume(self.request()).await.expect_err(self.what);
        assert_eq!(st.code(), self.code, "{}: {}", self.what, st.message());
        assert!(
            st.message().contains(&self.says),
            "{}: {}",
            self.what,
            st.message()
        );
    }
}

fn register(
    server: &Server,
    dir: &std::path::Path,
    name: &str,
    size: u64,
    seed: u64,
) -> (String, SparseModel) {
    let mut m = SparseModel::create(&dir.join(format!("{name}.img")), size, seed);
    m.fill(1, 8, false);
    let v = server.json1(&[
        "volume",
        "register",
        "--name",
        name,
        "--path",
        m.path.to_str().unwrap(),
    ]);
    (s(&v["id"]), m)
}

fn volumes(server: &Server) -> usize {
    server.json(&["volume", "list"]).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_row_of_the_design_table_through_cli_and_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    const MIB: u64 = 1 << 20;

    // Volume 1: full F1, incrementals I1 and I2, then a new chain: full F2, incremental I3.
    let (v1, mut m1) = register(&server, dir.path(), "one", 64 * MIB, 1);
    let f1 = s(&server.backup(&v1, &[])["id"]);
    m1.fill(100, 2, false);
    let i1 = s(&server.backup(&v1, &["--incremental"])["id"]);
    m1.fill(200, 2, false);
    let i2 = s(&server.backup(&v1, &["--incremental"])["id"]);
    let f2 = s(&server.backup(&v1, &[])["id"]);
    m1.fill(300, 2, false);
    let i3 = s(&server.backup(&v1, &["--incremental"])["id"]);
    // Volume 2: another volume's chain.
    let (v2, mut m2) = register(&server, dir.path(), "two", 64 * MIB, 2);
    server.backup(&v2, &[]);
    m2.fill(5, 1, false);
    let j1 = s(&server.backup(&v2, &["--incremental"])["id"]);
    // Volume 3: grown between its full and its incremental.
    let (v3, m3) = register(&server, dir.path(), "three", 64 * MIB, 3);
    let r0 = s(&server.backup(&v3, &[])["id"]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&m3.path)
        .unwrap()
        .set_len(65 * MIB)
        .unwrap();
    let r1 = s(&server.backup(&v3, &["--incremental"])["id"]);
    let before = volumes(&server);

    use Code::*;
    let mut rows = vec![
        Row::new(
            "malformed first id",
            "bkp-xyz",
            &i1,
            InvalidArgument,
            "INVALID_ARGUMENT",
            "malformed first backup id",
        ),
        Row::new(
            "malformed second id",
            &f1,
            "snap-1",
            InvalidArgument,
            "INVALID_ARGUMENT",
            "malformed second backup id",
        ),
        Row::new(
            "first = second",
            &i1,
            &i1,
            InvalidArgument,
            "INVALID_ARGUMENT",
            "same backup",
        ),
        Row::new(
            "first not older",
            &i2,
            &i1,
            InvalidArgument,
            "INVALID_ARGUMENT",
            "not older",
        ),
        Row::new(
            "second is a full",
            &f1,
            &f2,
            InvalidArgument,
            "INVALID_ARGUMENT",
            "full backup",
        ),
        Row::new(
            "a full between two incrementals",
            &i2,
            &i3,
            InvalidArgument,
            "INVALID_ARGUMENT",
            &format!("{f2} lies between"),
        ),
        Row::new(
            "different volumes",
            &f1,
            &j1,
            PermissionDenied,
            "PERMISSION_DENIED",
            "different volumes",
        ),
        Row::new(
            "resized between",
            &r0,
            &r1,
            PermissionDenied,
            "PERMISSION_DENIED",
            "resized",
        ),
        Row::new(
            "backup does not exist",
            &f1,
            "bkp-00000000deadbeef",
            NotFound,
            "NOT_FOUND",
            "bkp-00000000deadbeef not found",
        ),
        Row::new(
            "first does not exist",
            "bkp-0000000000000001",
            &i1,
            NotFound,
            "NOT_FOUND",
            "first backup",
        ),
    ];
    let mut bad_type = Row::new(
        "bad type",
        &f1,
        &i1,
        InvalidArgument,
        "INVALID_ARGUMENT",
        "volumeBackupDelta",
    );
    bad_type.source_type = "volumeBackup";
    rows.push(bad_type);
    for (cbs, what) in [
        (12288, "not a power of two"),
        (2048, "below 4096"),
        (2 << 20, "above 1 MiB"),
    ] {
        let mut r = Row::new(
            what,
            &f1,
            &i1,
            InvalidArgument,
            "INVALID_ARGUMENT",
            "power of two from 4096 to 1048576",
        );
        r.change_block_size = cbs;
        rows.push(r);
    }
    let mut lower_cost = Row::new(
        "lower-cost performance",
        &f1,
        &i1,
        NotFound,
        "NOT_FOUND",
        "Lower Cost",
    );
    lower_cost.vpus_per_gb = Some(0);
    rows.push(lower_cost);
    for row in &rows {
        row.check(&server).await;
    }
    assert_eq!(
        volumes(&server),
        before,
        "a refused request created a volume"
    );

    // A backup that is not available: an incremental still being written.
    let (v4, mut m4) = register(&server, dir.path(), "four", 128 * MIB, 4);
    let k0 = s(&server.backup(&v4, &[])["id"]);
    m4.fill(1024, 16384, false);
    let k1 = s(&server.json1(&[
        "backup",
        "create",
        &v4,
        "--incremental",
        "--compression",
        "bz2",
    ])["id"]);
    Row::new(
        "second not available",
        &k0,
        &k1,
        FailedPrecondition,
        "FAILED_PRECONDITION",
        "creating",
    )
    .check(&server)
    .await;
    assert_eq!(
        server.json1(&["backup", "show", &k1])["status"],
        "creating",
        "the backup was still being written when the rows were checked"
    );
    server.json1(&["backup", "delete", &k1, "--force", "--wait"]);

    // Anything unexpected: INTERNAL with a request id (here an index that cannot
    // be read: a directory where the file should be).
    let index = dir
        .path()
        .join("data/repository/backups")
        .join(format!("{j1}.index"));
    std::fs::remove_file(&index).unwrap();
    std::fs::create_dir(&index).unwrap();
    let first_of_j1 = s(&server.json1(&["backup", "show", &j1])["parent"]);
    Row::new(
        "unexpected",
        &first_of_j1,
        &j1,
        Internal,
        "INTERNAL",
        "request id",
    )
    .check(&server)
    .await;
    assert_eq!(volumes(&server), before + 1, "only volume four was added");
    drop(server);

    // The delta feature switched off for the server: NOT_FOUND, as Oracle answers.
    let off = Server::start_with(&dir.path().join("data-off"), &["--delta-enabled", "false"]);
    Row::new(
        "delta disabled",
        &f1,
        &i1,
        NotFound,
        "NOT_FOUND",
        "not enabled",
    )
    .check(&off)
    .await;
}
