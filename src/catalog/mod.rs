//! The catalog: volumes, backups, projects, tokens, quotas, nodes, jobs and the audit log,
//! in SQLite (embedded) or PostgreSQL (shared by a cluster's nodes; see [`db`]). It holds what the
//! service says about things (names, status, progress, errors); the bytes and
//! the truth about what a backup contains live in the repository, from which
//! `recover` can rebuild this database.
//!
//! Never does I/O on volumes or the repository. This file: opening it on either database,
//! and what spans volumes and backups at once (a restore's start); [`db`] is the seam to
//! the databases (and the kinds' column forms); [`volumes`], [`backups`], [`audit`],
//! [`identity`], [`quotas`], [`attachments`], [`deltas`], [`nodes`], [`jobs`] and [`policies`]
//! hold the rest, one table family each.

pub mod attachments;
mod audit;
mod backups;
pub mod db;
pub mod deltas;
pub mod error;
pub mod identity;
mod jobs;
mod migrations;
mod nodes;
mod policies;
mod quotas;
mod volumes;

use crate::faults::fault;
use std::path::Path;

use db::Session;

pub use attachments::AttachmentRecord;
pub use audit::audit_line;
pub use backups::{BackupRecord, DeleteRefusal, MergeRefusal, well_formed_backup_id};
pub use deltas::DeltaSourceRecord;
pub use error::CatalogError;
pub use identity::{ProjectRecord, TokenRecord};
pub use jobs::{Claim, JobRecord};
pub use nodes::NodeRecord;
pub use policies::{AssignmentRecord, PolicyInUse, PolicyRecord, RunRecord};
pub use volumes::VolumeRecord;
pub(crate) use volumes::{insert_volume_row, volume_ask};

pub use crate::kinds::{BackupKind, Status, VolumeKind};

/// Where the catalog lives: the config key `catalog`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogLocation {
    /// `sqlite` (the default): `catalog.sqlite` in the data directory, one server.
    Sqlite,
    /// `postgres://…`: shared by every node of a cluster.
    Postgres(String),
}

impl CatalogLocation {
    pub fn parse(text: &str) -> Result<CatalogLocation, String> {
        if text.is_empty() || text == "sqlite" {
            Ok(CatalogLocation::Sqlite)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(CatalogLocation::Postgres(text.to_string()))
        } else {
            Err(format!(
                "catalog {text:?}: expected \"sqlite\" or a postgres://user@host:port/dbname URL"
            ))
        }
    }
}

enum Backend {
    Sqlite(db::sqlite::SqliteDb),
    Postgres(Box<db::postgres::PostgresDb>),
}

pub struct Catalog {
    db: Backend,
}

impl Catalog {
    /// The embedded catalog at `path`.
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        Ok(Catalog {
            db: Backend::Sqlite(db::sqlite::SqliteDb::open(path)?),
        })
    }

    /// The catalog `location` names; `data_dir` holds the embedded one.
    pub fn open_at(location: &CatalogLocation, data_dir: &Path) -> Result<Catalog, CatalogError> {
        match location {
            CatalogLocation::Sqlite => Catalog::open(&data_dir.join("catalog.sqlite")),
            CatalogLocation::Postgres(url) => Ok(Catalog {
                db: Backend::Postgres(Box::new(db::postgres::PostgresDb::open(url)?)),
            }),
        }
    }

    /// Whether several servers may share it.
    pub fn is_shared(&self) -> bool {
        matches!(self.db, Backend::Postgres(_))
    }

    pub fn describe(&self) -> String {
        match &self.db {
            Backend::Sqlite(_) => "sqlite".to_string(),
            Backend::Postgres(pg) => pg.location().to_string(),
        }
    }

    /// Statements each on its own (reads, and writes that are one statement).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Session) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        timing::timed(|| match &self.db {
            Backend::Sqlite(db) => db.read(f),
            Backend::Postgres(db) => db.read(f),
        })
    }

    /// Statements in one transaction, one writer at a time (across nodes, too).
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn Session) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        timing::timed(|| match &self.db {
            Backend::Sqlite(db) => db.write(f),
            Backend::Postgres(db) => db.write(f),
        })
    }

    /// Starts a restore in one transaction, so no failure (or panic) between two writes can
    /// leave a volume `restoring` with no job behind it: the fresh target volume is
    /// inserted as `restoring` (an existing one marked so), and the backup `restoring`.
    pub fn begin_restore(
        &self,
        volume: &VolumeRecord,
        fresh: bool,
        backup_id: &str,
    ) -> Result<(), CatalogError> {
        fault!("catalog.begin_restore", CatalogError::disk_full);
        self.write(|s| {
            if fresh {
                quotas::reserve_on(s, &volume.project, volume_ask(volume))?;
                insert_volume_row(s, volume)?;
            } else {
                s.execute(
                    "UPDATE volumes SET status = ?2, error = '' WHERE id = ?1",
                    &[&volume.id, &Status::Restoring],
                )?;
            }
            s.execute(
                "UPDATE backups SET status = ?2, error = '' WHERE id = ?1",
                &[&backup_id, &Status::Restoring],
            )?;
            Ok(())
        })
    }
}

/// Time spent in catalog calls, counted per thread, for the share of a backup's time its
/// own calls take (`catalog_seconds` in the server's log at each backup's end: the calls of
/// the request that started it and of its job, not other requests' meanwhile).
pub mod timing {
    use std::cell::Cell;

    thread_local! {
        static NANOS: Cell<u64> = const { Cell::new(0) };
    }

    /// Runs `call`, adding its time to this thread's count.
    pub(super) fn timed<T>(call: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let out = call();
        let spent = started.elapsed().as_nanos() as u64;
        NANOS.with(|n| n.set(n.get() + spent));
        out
    }

    /// Nanoseconds this thread has spent in catalog calls.
    pub fn thread_nanos() -> u64 {
        NANOS.with(Cell::get)
    }
}

/// Whether an insert counts against its project's quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    /// A new record: refused (creating nothing) when over a limit.
    Reserve,
    /// A record that existed before (recover brings it back): never refused.
    Exempt,
}
