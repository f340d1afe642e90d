//! The one table of who may make which call: every RPC of every service, by its gRPC
//! path, with the least role it needs. A call with no rule is refused, and a test walks
//! the proto descriptors so an RPC added without a rule fails it.

use super::Role;

/// What a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Nothing: gRPC health and reflection, which say nothing about anyone's data.
    Open,
    /// A bearer token in the `authorization` header with at least this role.
    Token(Role),
    /// As `Token`, but CSI's sidecar may carry the token in the request's `security_token`
    /// field instead, which only the handler can read.
    CsiSecurityToken(Role),
}

const OPEN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    // Which plugin this is and whether it is ready: what the CSI sidecar asks first.
    "/csi.v1.Identity/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

const RULES: &[(&str, Rule)] = {
    use Role::*;
    use Rule::*;
    &[
        ("/blockdelta.v1.VolumeService/CreateVolume", Token(Member)),
        // Only an admin may name a host path (and only under the operator's volume roots).
        ("/blockdelta.v1.VolumeService/RegisterVolume", Token(Admin)),
        ("/blockdelta.v1.VolumeService/ListVolumes", Token(Reader)),
        ("/blockdelta.v1.VolumeService/GetVolume", Token(Reader)),
        ("/blockdelta.v1.VolumeService/DeleteVolume", Token(Member)),
        ("/blockdelta.v1.VolumeService/AttachVolume", Token(Member)),
        ("/blockdelta.v1.VolumeService/DetachVolume", Token(Member)),
        (
            "/blockdelta.v1.VolumeService/ListAuditEvents",
            Token(Reader),
        ),
        // Where the nodes are: what a client needs to reach the one serving its attachment.
        ("/blockdelta.v1.VolumeService/ListServices", Token(Reader)),
        ("/blockdelta.v1.BackupService/CreateBackup", Token(Member)),
        ("/blockdelta.v1.BackupService/ListBackups", Token(Reader)),
        ("/blockdelta.v1.BackupService/GetBackup", Token(Reader)),
        ("/blockdelta.v1.BackupService/DeleteBackup", Token(Member)),
        ("/blockdelta.v1.BackupService/MergeBackup", Token(Member)),
        ("/blockdelta.v1.BackupService/CancelRestore", Token(Member)),
        ("/blockdelta.v1.BackupService/RestoreBackup", Token(Member)),
        // Writes to a server-side location.
        ("/blockdelta.v1.BackupService/CopyBackup", Token(Admin)),
        // Records name the repository, and an import makes rows in any project.
        (
            "/blockdelta.v1.BackupService/ExportBackupRecord",
            Token(Admin),
        ),
        (
            "/blockdelta.v1.BackupService/ImportBackupRecord",
            Token(Admin),
        ),
        ("/blockdelta.v1.PolicyService/CreatePolicy", Token(Member)),
        ("/blockdelta.v1.PolicyService/ListPolicies", Token(Reader)),
        ("/blockdelta.v1.PolicyService/GetPolicy", Token(Reader)),
        ("/blockdelta.v1.PolicyService/DeletePolicy", Token(Member)),
        ("/blockdelta.v1.PolicyService/AssignPolicy", Token(Member)),
        ("/blockdelta.v1.PolicyService/UnassignPolicy", Token(Member)),
        ("/blockdelta.v1.PolicyService/RunPolicy", Token(Member)),
        ("/blockdelta.v1.ReportService/GetReport", Token(Reader)),
        // Reads every frame of a chain: work a reader should not be able to start at will.
        ("/blockdelta.v1.BackupService/VerifyBackup", Token(Member)),
        (
            "/blockdelta.v1.BackupService/ListChangedBlocks",
            Token(Reader),
        ),
        (
            "/blockdelta.v1.BackupService/StreamChangedBlocks",
            Token(Reader),
        ),
        (
            "/blockdelta.v1.BackupService/ListAllocatedBlocks",
            Token(Reader),
        ),
        ("/blockdelta.v1.BackupService/GetBlockData", Token(Reader)),
        (
            "/blockdelta.v1.BackupService/GetChangedBlockData",
            Token(Reader),
        ),
        // Repository-wide: every project's packs.
        ("/blockdelta.v1.BackupService/CollectGarbage", Token(Admin)),
        ("/blockdelta.v1.BackupService/RecoverCatalog", Token(Admin)),
        ("/blockdelta.v1.IdentityService/CreateProject", Token(Admin)),
        ("/blockdelta.v1.IdentityService/ListProjects", Token(Reader)),
        ("/blockdelta.v1.IdentityService/DeleteProject", Token(Admin)),
        ("/blockdelta.v1.IdentityService/UpdateProject", Token(Admin)),
        ("/blockdelta.v1.IdentityService/CreateToken", Token(Admin)),
        ("/blockdelta.v1.IdentityService/ListTokens", Token(Admin)),
        ("/blockdelta.v1.IdentityService/RevokeToken", Token(Admin)),
        ("/blockdelta.v1.IdentityService/GetQuota", Token(Reader)),
        ("/blockdelta.v1.IdentityService/SetQuota", Token(Admin)),
        (
            "/blockdelta.v1.IdentityService/GetQuotaDefaults",
            Token(Reader),
        ),
        ("/blockdelta.v1.IdentityService/WhoAmI", Token(Reader)),
        (
            "/csi.v1.SnapshotMetadata/GetMetadataAllocated",
            CsiSecurityToken(Reader),
        ),
        (
            "/csi.v1.SnapshotMetadata/GetMetadataDelta",
            CsiSecurityToken(Reader),
        ),
    ]
};

/// The rule for a gRPC path (`/package.Service/Method`); `None`: no such call, or one
/// nobody wrote a rule for, which is refused.
pub fn rule(path: &str) -> Option<Rule> {
    if OPEN_SERVICES.iter().any(|s| path.starts_with(s)) {
        return Some(Rule::Open);
    }
    RULES.iter().find(|(p, _)| *p == path).map(|(_, r)| *r)
}

/// Every path the table names, for the tests that walk it.
#[cfg(test)]
pub fn all_paths() -> impl Iterator<Item = &'static str> {
    RULES.iter().map(|(p, _)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_and_unknown_paths() {
        assert_eq!(rule("/grpc.health.v1.Health/Check"), Some(Rule::Open));
        assert_eq!(rule("/blockdelta.v1.VolumeService/Nope"), None);
        assert_eq!(
            rule("/blockdelta.v1.VolumeService/RegisterVolume"),
            Some(Rule::Token(Role::Admin))
        );
    }

    /// Every RPC in the compiled proto descriptors has a rule, and every rule names an
    /// RPC that exists: a new RPC without a rule fails here.
    #[test]
    fn every_rpc_of_every_service_has_a_rule() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::api::pb::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut paths = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        assert!(paths.len() >= 30, "{paths:?}");
        for p in &paths {
            assert!(rule(p).is_some(), "no access rule for {p}");
        }
        let open: Vec<&String> = paths
            .iter()
            .filter(|p| rule(p) == Some(Rule::Open))
            .collect();
        assert_eq!(open.len(), 3, "only CSI's Identity is open: {open:?}");
        for p in all_paths() {
            assert!(
                paths.iter().any(|q| q == p),
                "rule for a call that does not exist: {p}"
            );
        }
    }
}
