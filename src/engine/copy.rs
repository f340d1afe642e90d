//! Moving a repository between backends (`blockdelta repository copy`): the use case
//! runs on the two repositories directly, with or without a server on either.

use super::EngineError;
use crate::repo::store::RepositoryLocation;
use crate::repo::{Repository, S3Settings};

/// What a copy stored at the destination.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyReport {
    pub objects: u64,
    pub bytes: u64,
}

/// Copies every object of the repository at `from` that `to` lacks (see
/// `Repository::copy_to`); `to` is created when it holds no repository yet.
pub fn copy_repository(
    from: &RepositoryLocation,
    from_s3: &S3Settings,
    to: &RepositoryLocation,
    to_s3: &S3Settings,
) -> Result<CopyReport, EngineError> {
    let source = Repository::open(from, from_s3, false)?;
    let destination = Repository::open(to, to_s3, true)?;
    let (objects, bytes) = source.copy_to(&destination)?;
    Ok(CopyReport { objects, bytes })
}
