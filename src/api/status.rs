//! The one mapping from domain errors to gRPC status codes (DESIGN.md §6).
//! No other place invents a status code.

use tonic::{Code, Status};

use crate::catalog::CatalogError;
use crate::engine::EngineError;
use crate::repo::RepoError;

pub fn to_status(e: EngineError) -> Status {
    let code = match &e {
        EngineError::InvalidArgument(_) => Code::InvalidArgument,
        EngineError::NotFound { .. } => Code::NotFound,
        EngineError::FailedPrecondition(_) => Code::FailedPrecondition,
        EngineError::Interrupted => Code::Aborted,
        EngineError::Damaged { .. } | EngineError::VerifyFailed { .. } => Code::DataLoss,
        EngineError::Repo(r) => repo_code(r),
        EngineError::Catalog(CatalogError::NotFound { .. }) => Code::NotFound,
        EngineError::Catalog(CatalogError::NameTaken { .. }) => Code::AlreadyExists,
        EngineError::Catalog(_) | EngineError::Io { .. } => Code::Internal,
    };
    if code == Code::Internal {
        let request_id = format!("{:016x}", rand::random::<u64>());
        tracing::error!(%request_id, error = %e, "internal error");
        return Status::new(
            code,
            format!("internal error (request id {request_id}): {e}"),
        );
    }
    Status::new(code, e.to_string())
}

fn repo_code(e: &RepoError) -> Code {
    match e {
        RepoError::Corrupt { .. } => Code::DataLoss,
        RepoError::NotFound { .. } => Code::NotFound,
        RepoError::UnknownCodec(_) => Code::InvalidArgument,
        RepoError::Io { .. } => Code::Internal,
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

    #[test]
    fn codes_follow_the_design_table() {
        assert_eq!(
            to_status(EngineError::InvalidArgument("x".into())).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            to_status(EngineError::NotFound {
                kind: "backup",
                id: "b".into()
            })
            .code(),
            Code::NotFound
        );
        assert_eq!(
            to_status(EngineError::FailedPrecondition("x".into())).code(),
            Code::FailedPrecondition
        );
        let damaged = EngineError::Damaged {
            backup_id: "bkp-1".into(),
            owner_id: "bkp-1".into(),
            source: RepoError::Corrupt {
                object: "pack ab@8".into(),
                reason: "blake3 mismatch".into(),
            },
        };
        let st = to_status(damaged);
        assert_eq!(st.code(), Code::DataLoss);
        assert!(st.message().contains("bkp-1") && st.message().contains("pack ab@8"));
        let io = EngineError::io("/x", std::io::Error::other("boom"));
        assert!(to_status(io).message().contains("request id"));
    }
}
