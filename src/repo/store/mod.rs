//! Where the repository's objects live: one small trait, two real backends.
//!
//! The repository is a set of immutable, named objects (packs, indexes, fingerprints,
//! volume manifests) plus one append-only audit log. That is all a backend has to
//! keep, so a local directory and an S3 bucket give the same guarantees:
//! - `put` is atomic and durable: a reader sees the whole object or none of it, and
//!   after `put` returns the object survives a crash (local: temp file, fsync, rename,
//!   fsync of the directory; S3: a PUT is atomic by contract);
//! - objects never change once put, so there is nothing to lock for readers;
//! - every error names the object (path, or `s3://bucket/key`) and, for S3, the endpoint.
//!
//! Keys are `/`-separated and relative to the repository (`packs/3f/3fa1….pack`); the
//! local backend maps them onto today's on-disk layout unchanged.

mod local;
pub mod s3;

use std::ops::Range;
use std::time::SystemTime;

pub use local::LocalStore;
pub use s3::{S3Location, S3Store};

use super::RepoError;

/// One listed object.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    /// The key, relative to the repository.
    pub key: String,
    pub size: u64,
    /// When it was put (the backend's clock), if the backend says.
    pub modified: Option<SystemTime>,
}

pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` under `key`, atomically and durably (see the module comment).
    fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<(), RepoError>;

    /// The whole object; `NotFound` naming it when it is absent.
    fn get(&self, key: &str) -> Result<Vec<u8>, RepoError>;

    /// `range` of the object: exactly that many bytes, or `Corrupt` when the object is
    /// shorter (an index promised them).
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, RepoError>;

    /// Every object whose key starts with `prefix` (a folder: `packs/`, `backups/`).
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, RepoError>;

    /// Removes an object; one that is already gone is not an error.
    fn delete(&self, key: &str) -> Result<(), RepoError>;

    /// Adds one line to the log at `key`, durably. Local: appended to one file. S3 has no
    /// append, so each line is its own object under `key/`; `read_log` joins them.
    fn append_log(&self, key: &str, line: &str) -> Result<(), RepoError>;

    /// Every line of the log at `key`, oldest first.
    fn read_log(&self, key: &str) -> Result<String, RepoError>;

    /// How an operator finds `key`: a path, or `s3://bucket/prefix/key`.
    fn describe(&self, key: &str) -> String;

    /// The repository itself, as configured (`/var/lib/…/repository`, `s3://bucket/prefix`).
    fn location(&self) -> String;

    /// Requests worth having in flight at once (pack puts, restore reads): one for a
    /// local disk (its fsyncs queue anyway; reads are sized by the cores), several for
    /// object storage, where each request waits on the network.
    fn requests_in_flight(&self) -> usize;

    /// Size at which a backup closes a pack: 4 MiB on a local disk (garbage collection
    /// frees space in small steps), 16 MiB on object storage, as restic's default, where
    /// every object costs a request and the store's own metadata.
    fn pack_target_len(&self) -> u64;

    /// Bytes worth fetching in one read when several frames of a pack are wanted: reads
    /// on a local disk are cheap, each S3 request costs a round trip.
    fn coalesce_gap(&self) -> u64;
}

/// Where a repository is: the `repository` config key parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositoryLocation {
    Local(std::path::PathBuf),
    S3(S3Location),
}

impl RepositoryLocation {
    /// `s3://BUCKET/PREFIX` or a local path.
    pub fn parse(text: &str) -> Result<RepositoryLocation, String> {
        match text.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(format!("repository {text:?}: no bucket after s3://"));
                }
                let valid = (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    });
                if !valid {
                    return Err(format!(
                        "repository {text:?}: bucket names are 3-63 of a-z, 0-9, '-' and '.'"
                    ));
                }
                Ok(RepositoryLocation::S3(S3Location {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_matches('/').to_string(),
                }))
            }
            None if text.contains("://") => Err(format!(
                "repository {text:?}: expected a local path or s3://BUCKET/PREFIX"
            )),
            None => Ok(RepositoryLocation::Local(text.into())),
        }
    }
}

impl std::fmt::Display for RepositoryLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepositoryLocation::Local(p) => write!(f, "{}", p.display()),
            RepositoryLocation::S3(s) => write!(f, "{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(
            RepositoryLocation::parse("s3://bkt/p/q/").unwrap(),
            RepositoryLocation::S3(S3Location {
                bucket: "bkt".into(),
                prefix: "p/q".into()
            })
        );
        assert_eq!(
            RepositoryLocation::parse("s3://bkt").unwrap().to_string(),
            "s3://bkt"
        );
        assert!(RepositoryLocation::parse("s3:///x").is_err());
        assert!(RepositoryLocation::parse("s3://ab/x").is_err());
        assert!(RepositoryLocation::parse("s3://Bucket/x").is_err());
        assert!(RepositoryLocation::parse("gs://bkt/x").is_err());
        assert_eq!(
            RepositoryLocation::parse("/srv/repo").unwrap(),
            RepositoryLocation::Local("/srv/repo".into())
        );
    }
}
