//! The one mapping from domain errors to gRPC status codes (DESIGN.md §6), and the
//! CSI flavour of it (CSI spec, SnapshotMetadata errors). No other place invents
//! a status code.

use tonic::{Code, Status};

use crate::delta::DeltaError;
use crate::engine::{CatalogError, EngineError, RepoError};
use crate::export::ExportError;

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Delta(#[from] DeltaError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A request field the handler itself decodes is missing or wrong.
    #[error("{0}")]
    InvalidArgument(String),
    /// A CSI offset outside the volume.
    #[error("{0}")]
    OutOfRange(String),
    /// No token, or one that is unknown or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's role may not make this call.
    #[error("{0}")]
    PermissionDenied(String),
}

pub fn to_status(e: ApiError) -> Status {
    let code = code(&e);
    status(code, e)
}

/// CSI's codes (spec.md, "Snapshot Metadata Service RPCs"): NOT_FOUND for unknown
/// snapshots, INVALID_ARGUMENT for bad fields, OUT_OF_RANGE for offsets, and
/// FAILED_PRECONDITION when no changed-block tracking joins the two snapshots (the
/// caller should then take a full backup).
pub fn to_csi_status(e: ApiError) -> Status {
    let code = match &e {
        ApiError::Delta(d) => match d {
            DeltaError::DifferentVolumes { .. } | DeltaError::NotOlder { .. } => {
                Code::InvalidArgument
            }
            DeltaError::SecondIsFull(_)
            | DeltaError::FullBetween { .. }
            | DeltaError::Resized { .. }
            | DeltaError::NotAvailable { .. }
            | DeltaError::Disabled => Code::FailedPrecondition,
            _ => code(&e),
        },
        _ => code(&e),
    };
    status(code, e)
}

/// Longest message a status carries: it travels in an HTTP/2 trailer, and a message that
/// echoes a huge request field would make the client fail on header size instead of
/// seeing the code.
const MAX_MESSAGE_LEN: usize = 1024;

fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE_LEN {
        return message;
    }
    let mut end = MAX_MESSAGE_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &message[..end], message.len())
}

fn status(code: Code, e: ApiError) -> Status {
    if code == Code::Internal {
        let request_id = format!("{:016x}", rand::random::<u64>());
        tracing::error!(%request_id, error = %e, "internal error");
        return Status::new(
            code,
            bounded(format!("internal error (request id {request_id}): {e}")),
        );
    }
    Status::new(code, bounded(e.to_string()))
}

fn code(e: &ApiError) -> Code {
    match e {
        ApiError::Engine(e) => engine_code(e),
        ApiError::Delta(e) => delta_code(e),
        ApiError::Export(e) => export_code(e),
        ApiError::Catalog(e) => catalog_code(e),
        ApiError::InvalidArgument(_) => Code::InvalidArgument,
        ApiError::OutOfRange(_) => Code::OutOfRange,
        ApiError::Unauthenticated(_) => Code::Unauthenticated,
        ApiError::PermissionDenied(_) => Code::PermissionDenied,
    }
}

fn engine_code(e: &EngineError) -> Code {
    match e {
        EngineError::Invalid(_) => Code::InvalidArgument,
        EngineError::NotFound { .. } => Code::NotFound,
        EngineError::Refused(_) => Code::FailedPrecondition,
        EngineError::Denied(_) => Code::PermissionDenied,
        EngineError::Interrupted => Code::Aborted,
        EngineError::Damaged { .. } | EngineError::VerifyFailed { .. } => Code::DataLoss,
        EngineError::Repo(r) => repo_code(r),
        EngineError::Catalog(c) => catalog_code(c),
        EngineError::Io { source, .. } if is_disk_full(source) => Code::ResourceExhausted,
        EngineError::Io { .. } => Code::Internal,
    }
}

/// DESIGN.md §6, row by row.
fn delta_code(e: &DeltaError) -> Code {
    match e {
        DeltaError::UnknownSourceType(_)
        | DeltaError::BadPerformance(_)
        | DeltaError::ChangeBlockSize(_)
        | DeltaError::MalformedId { .. }
        | DeltaError::SameBackup(_)
        | DeltaError::NotOlder { .. }
        | DeltaError::SecondIsFull(_)
        | DeltaError::FullBetween { .. }
        | DeltaError::BadPageToken(_)
        | DeltaError::StartOutsideVolume { .. }
        | DeltaError::TooManyResults(_) => Code::InvalidArgument,
        DeltaError::DifferentVolumes { .. } | DeltaError::Resized { .. } => Code::PermissionDenied,
        DeltaError::NotFound { .. } | DeltaError::Disabled | DeltaError::LowerCostPerformance => {
            Code::NotFound
        }
        DeltaError::NotAvailable { .. } => Code::FailedPrecondition,
        DeltaError::RangeOutsideVolume { .. } => Code::OutOfRange,
        // An available backup whose index is missing or damaged has lost data.
        DeltaError::Repo { source, .. } => match source {
            RepoError::Io { .. } => Code::Internal,
            _ => Code::DataLoss,
        },
        DeltaError::Catalog(c) => catalog_code(c),
        DeltaError::NoSourceRecord(_) => Code::Internal,
    }
}

fn export_code(e: &ExportError) -> Code {
    match e {
        ExportError::Engine(e) => engine_code(e),
        ExportError::Delta(e) => delta_code(e),
        ExportError::Catalog(e) => catalog_code(e),
        ExportError::TargetNameInvalid(_)
        | ExportError::BlockSize(_)
        | ExportError::InvalidInitiator(_)
        | ExportError::UnknownNode(_) => Code::InvalidArgument,
        ExportError::TargetNameExported(_)
        | ExportError::AlreadyAttached { .. }
        | ExportError::NotAttached(_)
        | ExportError::NotAttachable { .. }
        | ExportError::SessionsActive { .. }
        | ExportError::Attached { .. }
        | ExportError::OnOtherNode { .. }
        | ExportError::Open { .. } => Code::FailedPrecondition,
    }
}

fn catalog_code(e: &CatalogError) -> Code {
    match e {
        CatalogError::NotFound { .. } => Code::NotFound,
        CatalogError::NameTaken { .. } => Code::AlreadyExists,
        CatalogError::Ambiguous { .. } => Code::InvalidArgument,
        CatalogError::QuotaExceeded(_) => Code::ResourceExhausted,
        e if e.is_disk_full() => Code::ResourceExhausted,
        CatalogError::Io { source, .. } if is_disk_full(source) => Code::ResourceExhausted,
        CatalogError::Unavailable(_) => Code::Unavailable,
        CatalogError::ParentNotAvailable { .. } | CatalogError::VolumeBusy { .. } => {
            Code::FailedPrecondition
        }
        CatalogError::Sqlite(_)
        | CatalogError::Postgres { .. }
        | CatalogError::Io { .. }
        | CatalogError::Corrupt(_) => Code::Internal,
    }
}

/// No space (or quota) left on a device: the operator can free some and retry.
fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

fn repo_code(e: &RepoError) -> Code {
    match e {
        RepoError::Corrupt { .. } => Code::DataLoss,
        RepoError::NotFound { .. } => Code::NotFound,
        RepoError::UnknownCodec(_) => Code::InvalidArgument,
        RepoError::Io { source, .. } if is_disk_full(source) => Code::ResourceExhausted,
        RepoError::Io { .. } => Code::Internal,
        // The object store is down or refusing: worth retrying once it is back.
        RepoError::Remote { .. } => Code::Unavailable,
    }
}

/// A failure of the blocking task itself (a panic in a handler): internal.
pub fn join_error(e: tokio::task::JoinError) -> Status {
    let request_id = format!("{:016x}", rand::random::<u64>());
    tracing::error!(%request_id, error = %e, "handler task failed");
    Status::internal(format!("internal error (request id {request_id})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::{InvalidRequest, Refusal};

    fn engine(e: EngineError) -> Status {
        to_status(e.into())
    }

    fn delta(e: DeltaError) -> Code {
        to_status(e.into()).code()
    }

    #[test]
    fn a_full_disk_is_resource_exhausted_and_long_messages_are_bounded() {
        let full = CatalogError::disk_full(std::io::Error::other("injected"));
        assert_eq!(engine(full.into()).code(), Code::ResourceExhausted);
        let enospc = EngineError::io("/x", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(engine(enospc).code(), Code::ResourceExhausted);
        let long = engine(
            InvalidRequest::NoSuchPath {
                path: "x".repeat(100_000),
            }
            .into(),
        );
        assert_eq!(long.code(), Code::InvalidArgument);
        assert!(long.message().len() < 1200, "{}", long.message().len());
    }

    #[test]
    fn engine_codes() {
        let invalid = InvalidRequest::MalformedBackupId { id: "x".into() };
        assert_eq!(engine(invalid.into()).code(), Code::InvalidArgument);
        assert_eq!(
            engine(EngineError::NotFound {
                kind: "backup",
                id: "b".into()
            })
            .code(),
            Code::NotFound
        );
        let refused = Refusal::DependentBackups {
            id: "bkp-1".into(),
            children: vec!["bkp-2".into(), "bkp-3".into()],
        };
        let st = engine(refused.into());
        assert_eq!(st.code(), Code::FailedPrecondition);
        assert_eq!(
            st.message(),
            "backup bkp-1 has dependent incremental backups (bkp-2, bkp-3); delete them first"
        );
        let damaged = EngineError::Damaged {
            backup_id: "bkp-1".into(),
            owner_id: "bkp-1".into(),
            source: RepoError::Corrupt {
                object: "pack ab@8".into(),
                reason: "blake3 mismatch".into(),
            },
        };
        let st = engine(damaged);
        assert_eq!(st.code(), Code::DataLoss);
        assert!(st.message().contains("bkp-1") && st.message().contains("pack ab@8"));
        let io = EngineError::io("/x", std::io::Error::other("boom"));
        assert!(engine(io).message().contains("request id"));
    }

    #[test]
    fn delta_codes_follow_the_design_table() {
        let id = || "bkp-0000000000000001".to_string();
        assert_eq!(
            delta(DeltaError::MalformedId {
                which: "first",
                id: id()
            }),
            Code::InvalidArgument
        );
        assert_eq!(delta(DeltaError::SameBackup(id())), Code::InvalidArgument);
        assert_eq!(
            delta(DeltaError::NotOlder {
                first: id(),
                second: id()
            }),
            Code::InvalidArgument
        );
        assert_eq!(
            delta(DeltaError::UnknownSourceType("x".into())),
            Code::InvalidArgument
        );
        assert_eq!(delta(DeltaError::ChangeBlockSize(3)), Code::InvalidArgument);
        assert_eq!(delta(DeltaError::SecondIsFull(id())), Code::InvalidArgument);
        assert_eq!(
            delta(DeltaError::FullBetween {
                first: id(),
                second: id(),
                full: id()
            }),
            Code::InvalidArgument
        );
        assert_eq!(
            delta(DeltaError::DifferentVolumes {
                first: id(),
                first_volume: "a".into(),
                second: id(),
                second_volume: "b".into()
            }),
            Code::PermissionDenied
        );
        assert_eq!(
            delta(DeltaError::Resized {
                first: id(),
                first_size: 1,
                second: id(),
                second_size: 2
            }),
            Code::PermissionDenied
        );
        assert_eq!(
            delta(DeltaError::NotFound {
                which: "first",
                id: id()
            }),
            Code::NotFound
        );
        assert_eq!(delta(DeltaError::Disabled), Code::NotFound);
        assert_eq!(delta(DeltaError::LowerCostPerformance), Code::NotFound);
        assert_eq!(
            delta(DeltaError::NotAvailable {
                id: id(),
                status: "creating".into()
            }),
            Code::FailedPrecondition
        );
        assert_eq!(
            to_csi_status(
                DeltaError::FullBetween {
                    first: id(),
                    second: id(),
                    full: id()
                }
                .into()
            )
            .code(),
            Code::FailedPrecondition
        );
    }
}
