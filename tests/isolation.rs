//! Acceptance 1 of the identity issue: every RPC of every service, walked from the
//! compiled proto descriptors, called with (a) no token, (b) a revoked token, (c) a reader
//! token where the call mutates, (d) a member token of project B on project A's
//! resources, answers UNAUTHENTICATED / UNAUTHENTICATED / PERMISSION_DENIED / NOT_FOUND
//! (or PERMISSION_DENIED for admin-only calls), and nothing changes in the catalog or the
//! repository. A new RPC without a case here fails the walk.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use blockdelta::api::csi_pb;
use blockdelta::api::pb;
use common::*;
use prost::Message;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic_prost::ProstCodec;

type Call = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>;

/// One unary call with an encoded request; the answer's body is ignored.
fn unary<M: Message + Default + Send + Sync + 'static>(
    url: String,
    token: String,
    path: &'static str,
    m: M,
) -> Call {
    Box::pin(async move {
        let mut g = tonic::client::Grpc::new(channel_as(&url, &token).await);
        g.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        g.unary(
            tonic::Request::new(m),
            PathAndQuery::from_static(path),
            ProstCodec::<M, ()>::default(),
        )
        .await
        .map(|_| ())
    })
}

/// One server-streaming call, read to its end.
fn streaming<M: Message + Default + Send + Sync + 'static>(
    url: String,
    token: String,
    path: &'static str,
    m: M,
) -> Call {
    Box::pin(async move {
        let mut g = tonic::client::Grpc::new(channel_as(&url, &token).await);
        g.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut s = g
            .server_streaming(
                tonic::Request::new(m),
                PathAndQuery::from_static(path),
                ProstCodec::<M, ()>::default(),
            )
            .await?
            .into_inner();
        while s.message().await?.is_some() {}
        Ok(())
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Least {
    /// No token needed: CSI's Identity (what plugin this is; no one's data).
    Open,
    Reader,
    Member,
    Admin,
}

/// What project B's member gets on a call about project A's resources.
#[derive(Clone, Copy, Debug, PartialEq)]
enum AsOtherProject {
    NotFound,
    /// Admin-only calls: the role decides before any resource is looked at.
    Denied,
    /// A call about no resource (a list, who am I): answered, about B alone.
    Answered,
}

struct Ids {
    volume: String,
    delta: String,
    full: String,
    inc: String,
    member_token_id: String,
}

struct Case {
    least: Least,
    other: AsOtherProject,
    call: Box<dyn Fn(String, String) -> Call>,
}

/// The case for every RPC, by gRPC path, its request naming project A's resources.
fn cases(ids: &Ids) -> BTreeMap<&'static str, Case> {
    use AsOtherProject::*;
    use Least::*;
    let mut m: BTreeMap<&'static str, Case> = BTreeMap::new();
    macro_rules! case {
        ($kind:ident, $path:literal, $least:expr, $other:expr, $req:expr) => {{
            let req = $req;
            m.insert(
                $path,
                Case {
                    least: $least,
                    other: $other,
                    call: Box::new(move |url, token| $kind(url, token, $path, req.clone())),
                },
            );
        }};
    }
    let (vol, delta, full, inc) = (
        ids.volume.clone(),
        ids.delta.clone(),
        ids.full.clone(),
        ids.inc.clone(),
    );
    case!(
        unary,
        "/blockdelta.v1.VolumeService/CreateVolume",
        Member,
        NotFound,
        pb::CreateVolumeRequest {
            name: "from-b".into(),
            source_details: Some(pb::VolumeSourceDetails {
                r#type: "volumeBackupDelta".into(),
                first_backup_id: full.clone(),
                second_backup_id: inc.clone(),
                change_block_size_in_bytes: 4096,
            }),
            ..Default::default()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.VolumeService/RegisterVolume",
        Admin,
        Denied,
        pb::RegisterVolumeRequest {
            name: "b-host".into(),
            path: "/etc/passwd".into()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.VolumeService/ListVolumes",
        Reader,
        Answered,
        pb::ListVolumesRequest {}
    );
    case!(
        unary,
        "/blockdelta.v1.VolumeService/GetVolume",
        Reader,
        NotFound,
        pb::GetVolumeRequest {
            volume: vol.clone()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.VolumeService/DeleteVolume",
        Member,
        NotFound,
        pb::DeleteVolumeRequest {
            volume: vol.clone(),
            force: true
        }
    );
    case!(
        unary,
        "/blockdelta.v1.VolumeService/AttachVolume",
        Member,
        NotFound,
        pb::AttachVolumeRequest {
            volume: vol.clone(),
            ..Default::default()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.VolumeService/DetachVolume",
        Member,
        NotFound,
        pb::DetachVolumeRequest {
            volume: delta.clone(),
            force: true
        }
    );
    case!(
        unary,
        "/blockdelta.v1.VolumeService/ListAuditEvents",
        Reader,
        Answered,
        pb::ListAuditEventsRequest { id: vol.clone() }
    );
    // The nodes, the same for every project (no project's data in it).
    case!(
        unary,
        "/blockdelta.v1.VolumeService/ListServices",
        Reader,
        Answered,
        pb::ListServicesRequest {}
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/CreateBackup",
        Member,
        NotFound,
        pb::CreateBackupRequest {
            volume: vol.clone(),
            ..Default::default()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/ListBackups",
        Reader,
        NotFound,
        pb::ListBackupsRequest {
            volume: vol.clone()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/GetBackup",
        Reader,
        NotFound,
        pb::GetBackupRequest { id: full.clone() }
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/DeleteBackup",
        Member,
        NotFound,
        pb::DeleteBackupRequest {
            id: inc.clone(),
            force: true
        }
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/RestoreBackup",
        Member,
        NotFound,
        pb::RestoreBackupRequest {
            id: full.clone(),
            ..Default::default()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/CancelRestore",
        Member,
        NotFound,
        pb::CancelRestoreRequest {
            volume: vol.clone()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/CopyBackup",
        Admin,
        Denied,
        pb::CopyBackupRequest {
            id: full.clone(),
            to: "/tmp/blockdelta-isolation-copy".into()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/ExportBackupRecord",
        Admin,
        Denied,
        pb::ExportBackupRecordRequest { id: full.clone() }
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/ImportBackupRecord",
        Admin,
        Denied,
        pb::BackupRecordExport {
            backup_service: "blockdelta".into(),
            backup_url: "AAAA".into()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.ReportService/GetReport",
        Reader,
        Answered,
        pb::GetReportRequest {
            since: "24h".into()
        }
    );
    // Policies are named within their project: B's "pa" does not exist.
    case!(
        unary,
        "/blockdelta.v1.PolicyService/CreatePolicy",
        Member,
        Denied,
        pb::CreatePolicyRequest {
            name: "pb".into(),
            schedule: "hourly".into(),
            copy_to: "/tmp/blockdelta-isolation-copy".into(),
            ..Default::default()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.PolicyService/ListPolicies",
        Reader,
        Answered,
        pb::ListPoliciesRequest {}
    );
    case!(
        unary,
        "/blockdelta.v1.PolicyService/GetPolicy",
        Reader,
        NotFound,
        pb::GetPolicyRequest { name: "pa".into() }
    );
    case!(
        unary,
        "/blockdelta.v1.PolicyService/DeletePolicy",
        Member,
        NotFound,
        pb::DeletePolicyRequest { name: "pa".into() }
    );
    case!(
        unary,
        "/blockdelta.v1.PolicyService/AssignPolicy",
        Member,
        NotFound,
        pb::AssignPolicyRequest {
            volume: vol.clone(),
            policy: "pa".into()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.PolicyService/UnassignPolicy",
        Member,
        NotFound,
        pb::AssignPolicyRequest {
            volume: vol.clone(),
            policy: "pa".into()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.PolicyService/RunPolicy",
        Member,
        NotFound,
        pb::RunPolicyRequest {
            name: "pa".into(),
            wait: true
        }
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/MergeBackup",
        Member,
        NotFound,
        pb::MergeBackupRequest { id: inc.clone() }
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/VerifyBackup",
        Member,
        NotFound,
        pb::VerifyBackupRequest { id: full.clone() }
    );
    let changed = pb::ListChangedBlocksRequest {
        first_backup_id: full.clone(),
        second_backup_id: inc.clone(),
        ..Default::default()
    };
    case!(
        unary,
        "/blockdelta.v1.BackupService/ListChangedBlocks",
        Reader,
        NotFound,
        changed.clone()
    );
    case!(
        streaming,
        "/blockdelta.v1.BackupService/StreamChangedBlocks",
        Reader,
        NotFound,
        changed.clone()
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/ListAllocatedBlocks",
        Reader,
        NotFound,
        pb::ListAllocatedBlocksRequest {
            backup_id: full.clone(),
            ..Default::default()
        }
    );
    case!(
        streaming,
        "/blockdelta.v1.BackupService/GetChangedBlockData",
        Reader,
        NotFound,
        pb::GetChangedBlockDataRequest {
            first_backup_id: full.clone(),
            second_backup_id: inc.clone(),
            ..Default::default()
        }
    );
    case!(
        streaming,
        "/blockdelta.v1.BackupService/GetBlockData",
        Reader,
        NotFound,
        pb::GetBlockDataRequest {
            backup_id: full.clone(),
            offset: 0,
            length: 4096,
        }
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/CollectGarbage",
        Admin,
        Denied,
        pb::CollectGarbageRequest {}
    );
    case!(
        unary,
        "/blockdelta.v1.BackupService/RecoverCatalog",
        Admin,
        Denied,
        pb::RecoverCatalogRequest::default()
    );
    case!(
        unary,
        "/blockdelta.v1.IdentityService/CreateProject",
        Admin,
        Denied,
        pb::CreateProjectRequest {
            name: "c".into(),
            delta_enabled: None
        }
    );
    case!(
        unary,
        "/blockdelta.v1.IdentityService/ListProjects",
        Reader,
        Answered,
        pb::ListProjectsRequest {}
    );
    case!(
        unary,
        "/blockdelta.v1.IdentityService/DeleteProject",
        Admin,
        Denied,
        pb::DeleteProjectRequest { name: "a".into() }
    );
    case!(
        unary,
        "/blockdelta.v1.IdentityService/UpdateProject",
        Admin,
        Denied,
        pb::UpdateProjectRequest {
            name: "a".into(),
            delta_enabled: Some(false)
        }
    );
    case!(
        unary,
        "/blockdelta.v1.IdentityService/CreateToken",
        Admin,
        Denied,
        pb::CreateTokenRequest {
            project: "a".into(),
            role: "admin".into(),
            ..Default::default()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.IdentityService/ListTokens",
        Admin,
        Denied,
        pb::ListTokensRequest::default()
    );
    case!(
        unary,
        "/blockdelta.v1.IdentityService/RevokeToken",
        Admin,
        Denied,
        pb::RevokeTokenRequest {
            id: ids.member_token_id.clone()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.IdentityService/GetQuota",
        Reader,
        NotFound,
        pb::GetQuotaRequest {
            project: "a".into(),
            usage: true
        }
    );
    case!(
        unary,
        "/blockdelta.v1.IdentityService/SetQuota",
        Admin,
        Denied,
        pb::SetQuotaRequest {
            project: "a".into(),
            volumes: Some(0),
            ..Default::default()
        }
    );
    case!(
        unary,
        "/blockdelta.v1.IdentityService/GetQuotaDefaults",
        Reader,
        Answered,
        pb::GetQuotaDefaultsRequest {}
    );
    case!(
        unary,
        "/blockdelta.v1.IdentityService/WhoAmI",
        Reader,
        Answered,
        pb::WhoAmIRequest {}
    );
    case!(
        unary,
        "/csi.v1.Identity/GetPluginInfo",
        Open,
        Answered,
        csi_pb::GetPluginInfoRequest {}
    );
    case!(
        unary,
        "/csi.v1.Identity/GetPluginCapabilities",
        Open,
        Answered,
        csi_pb::GetPluginCapabilitiesRequest {}
    );
    case!(
        unary,
        "/csi.v1.Identity/Probe",
        Open,
        Answered,
        csi_pb::ProbeRequest {}
    );
    case!(
        streaming,
        "/csi.v1.SnapshotMetadata/GetMetadataAllocated",
        Reader,
        NotFound,
        csi_pb::GetMetadataAllocatedRequest {
            snapshot_id: full.clone(),
            ..Default::default()
        }
    );
    case!(
        streaming,
        "/csi.v1.SnapshotMetadata/GetMetadataDelta",
        Reader,
        NotFound,
        csi_pb::GetMetadataDeltaRequest {
            base_snapshot_id: full.clone(),
            target_snapshot_id: inc.clone(),
            ..Default::default()
        }
    );
    m
}

/// Every RPC the server's descriptors declare, as gRPC paths.
fn declared_rpcs() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = Vec::new();
    for f in &set.file {
        for s in &f.service {
            for m in &s.method {
                out.push(format!("/{}.{}/{}", f.package(), s.name(), m.name()));
            }
        }
    }
    out
}

/// What could change: every record an admin can list, and every file of the repository
/// and the managed volumes (name, size, modification time).
fn state(server: &Server) -> String {
    let mut out = String::new();
    for args in [
        &["volume", "list"][..],
        &["backup", "list"],
        &["project", "list"],
        &["policy", "list"],
        &["quota", "show", "a", "--usage"],
        &["quota", "show", "b", "--usage"],
        &["audit"],
    ] {
        let o = server.cli(&[&["--json"][..], args].concat());
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    // Tokens, without last use (authenticating is not changing anything).
    for t in server.json(&["token", "list"]) {
        out.push_str(&format!(
            "{} {} {} {}\n",
            t["id"], t["project"], t["role"], t["revoked_at"]
        ));
    }
    fn walk(dir: &Path, out: &mut String) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let md = e.metadata().unwrap();
            if md.is_dir() {
                walk(&e.path(), out);
            } else {
                out.push_str(&format!(
                    "{} {} {:?}\n",
                    e.path().display(),
                    md.len(),
                    md.modified().unwrap()
                ));
            }
        }
    }
    walk(&server.data_dir.join("repository"), &mut out);
    walk(&server.data_dir.join("volumes"), &mut out);
    out
}

fn token(server: &Server, project: &str, role: &str) -> (String, String) {
    let t = server.json1(&["--project", project, "token", "create", "--role", role]);
    (s(&t["id"]), s(&t["token"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_the_wrong_caller_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    server.json1(&["project", "create", "a"]);
    server.json1(&["project", "create", "b"]);
    let as_a = |args: &[&str]| server.json1(&[&["--project", "a"][..], args].concat());
    let vol = s(&as_a(&["volume", "create", "--name", "va", "--size", "1M"])["id"]);
    let full = s(&as_a(&["backup", "create", &vol, "--wait"])["id"]);
    let inc = s(&as_a(&["backup", "create", &vol, "--incremental", "--wait"])["id"]);
    let delta = s(&as_a(&[
        "volume",
        "create",
        "--from-delta",
        "--first-backup",
        &full,
        "--second-backup",
        &inc,
        "--name",
        "da",
    ])["id"]);
    as_a(&["volume", "attach", &delta]);
    as_a(&["policy", "create", "pa", "--schedule", "daily 02:00"]);
    as_a(&["policy", "assign", &vol, "pa"]);
    let (member_id, _member) = token(&server, "a", "member");
    let (_, reader) = token(&server, "a", "reader");
    let (_, other) = token(&server, "b", "member");
    let (revoked_id, revoked) = token(&server, "a", "admin");
    server.json1(&["token", "revoke", &revoked_id]);

    let ids = Ids {
        volume: vol.clone(),
        delta: delta.clone(),
        full: full.clone(),
        inc: inc.clone(),
        member_token_id: member_id,
    };
    let cases = cases(&ids);
    let declared = declared_rpcs();
    let missing: Vec<&String> = declared
        .iter()
        .filter(|p| !cases.contains_key(p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "RPCs without an isolation case: {missing:?}"
    );
    assert_eq!(declared.len(), cases.len(), "{declared:?}");

    let before = state(&server);
    let url = server.url.clone();
    for (path, case) in &cases {
        let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
        if case.least == Least::Open {
            let r = (case.call)(url.clone(), String::new()).await;
            assert_eq!(code(r), Code::Ok, "{path}: open to all");
            continue;
        }
        assert_eq!(
            code((case.call)(url.clone(), String::new()).await),
            Code::Unauthenticated,
            "{path}: no token"
        );
        assert_eq!(
            code((case.call)(url.clone(), revoked.clone()).await),
            Code::Unauthenticated,
            "{path}: revoked token"
        );
        let malformed = "bdt_".to_string() + &"0".repeat(64);
        assert_eq!(
            code((case.call)(url.clone(), malformed).await),
            Code::Unauthenticated,
            "{path}: unknown token"
        );
        if case.least != Least::Reader {
            let r = (case.call)(url.clone(), reader.clone()).await;
            assert_eq!(code(r), Code::PermissionDenied, "{path}: reader token");
        }
        let r = (case.call)(url.clone(), other.clone()).await;
        let want = match case.other {
            AsOtherProject::NotFound => Code::NotFound,
            AsOtherProject::Denied => Code::PermissionDenied,
            AsOtherProject::Answered => Code::Ok,
        };
        assert_eq!(
            code(r.clone()),
            want,
            "{path}: project B's member on A's resources: {r:?}"
        );
    }
    assert_eq!(state(&server), before, "a refused call changed something");

    // What B is answered says nothing of A: its lists hold none of A's records, and an
    // A id is answered exactly as an id that does not exist.
    let b_cli = |args: &[&str]| {
        let o = server.cli_as(&other, &[&["--json"][..], args].concat());
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    for args in [
        &["volume", "list"][..],
        &["backup", "list"],
        &["audit"],
        &["project", "list"],
        &["policy", "list"],
        &["report", "--since", "1h"],
    ] {
        let (ok, out) = b_cli(args);
        assert!(ok, "{args:?}: {out}");
        for secret in [&vol, &full, &inc, &delta, &"\"a\"".to_string()] {
            assert!(
                !out.contains(secret.as_str()),
                "{args:?} shows A's {secret}: {out}"
            );
        }
    }
    let (_, theirs) = b_cli(&["backup", "show", &full]);
    let (_, nobody) = b_cli(&["backup", "show", "bkp-00000000000000aa"]);
    assert_eq!(
        theirs.replace(&full, "ID"),
        nobody.replace("bkp-00000000000000aa", "ID"),
        "another project's backup must look like one that does not exist"
    );

    // CSI's sidecar sends the token in `secrets`: the same rules hold there.
    let csi = |token: &str| {
        let req = csi_pb::GetMetadataAllocatedRequest {
            snapshot_id: full.clone(),
            secrets: if token.is_empty() {
                Default::default()
            } else {
                [("token".to_string(), token.to_string())].into()
            },
            ..Default::default()
        };
        streaming(
            url.clone(),
            String::new(),
            "/csi.v1.SnapshotMetadata/GetMetadataAllocated",
            req,
        )
    };
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    assert_eq!(code(csi("").await), Code::Unauthenticated);
    assert_eq!(code(csi(&revoked).await), Code::Unauthenticated);
    assert_eq!(code(csi(&other).await), Code::NotFound);
    assert_eq!(
        code(csi(&reader).await),
        Code::Ok,
        "A's reader may read A's metadata"
    );

    // A non-admin may not act for another project.
    let o = server.cli_as(&other, &["--project", "a", "volume", "list"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("PERMISSION_DENIED"));
    // Health and reflection stay open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel_as(&url, "").await);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers without a token");
    // Secrets: the CHAP secret of an attachment is in AttachVolume's answer only.
    let chap = as_a(&["volume", "attach", &vol, "--chap"]);
    let secret = s(&chap["chap_secret"]);
    assert_eq!(secret.len(), 16, "{chap}");
    for args in [
        &["volume", "list"][..],
        &["volume", "show", &vol],
        &["audit"],
    ] {
        let o = server.cli(&[&["--json", "--project", "a"][..], args].concat());
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains(&secret),
            "{args:?} shows the CHAP secret"
        );
    }

    // Discovery: an attachment made for one initiator is listed to it, to no other host.
    let v2 = s(&as_a(&["volume", "create", "--name", "va2", "--size", "1M"])["id"]);
    let only = "iqn.2026-12.io.blockdelta.test:a-host";
    let att = as_a(&["volume", "attach", &v2, "--initiator", only]);
    let target = s(&att["target_iqn"]);
    let portal: std::net::SocketAddr = server.iscsi.parse().unwrap();
    let listed = |initiator: &'static str| async move {
        use target_emulator::initiator::{Initiator, LoginOptions};
        let mut i = Initiator::connect(
            portal,
            &LoginOptions {
                initiator_name: initiator.into(),
                target_name: None,
                chap: None,
                header_digest: false,
                data_digest: false,
            },
        )
        .await
        .expect("discovery login");
        i.send_targets().await.expect("SendTargets")
    };
    let to_it = listed(only).await;
    assert!(to_it.iter().any(|(n, _)| *n == target), "{to_it:?}");
    let to_other = listed("iqn.2026-12.io.blockdelta.test:b-host").await;
    assert!(
        !to_other.iter().any(|(n, _)| *n == target),
        "another host sees {target}: {to_other:?}"
    );
}
