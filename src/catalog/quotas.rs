//! Per-project quota limits and usage. Usage is never stored: it is counted from the
//! records themselves in the transaction that adds one, so it always equals what exists,
//! a failed backup (status `error`) or a deleted record gives its share back by
//! existing no more, and two requests cannot both take the last unit.

use super::db::Session;
use super::{Catalog, CatalogError};
use crate::faults::fault;
use crate::identity::QuotaResource;
use crate::identity::quota::{self, Ask, Limits, Usage};

/// The project's limits: its own rows over the defaults.
pub(crate) fn limits_on(s: &mut dyn Session, project: &str) -> Result<Limits, CatalogError> {
    let mut limits = Limits::default();
    for r in s.query(
        "SELECT resource, hard_limit FROM quotas WHERE project = ?1",
        &[&project],
    )? {
        limits.set(r.get::<QuotaResource>(0)?, r.get::<i64>(1)?);
    }
    Ok(limits)
}

pub(crate) fn usage_on(s: &mut dyn Session, project: &str) -> Result<Usage, CatalogError> {
    // One statement (one round trip to a shared catalog).
    let u = s.query_one(
        "SELECT
           CAST((SELECT COALESCE(SUM(CASE WHEN kind != 'delta' THEN 1 ELSE 0 END), 0) FROM volumes WHERE project = ?1) AS BIGINT),
           CAST((SELECT COALESCE(SUM(CASE WHEN kind != 'delta' THEN size ELSE 0 END), 0) FROM volumes WHERE project = ?1) AS BIGINT),
           CAST((SELECT COALESCE(SUM(CASE WHEN kind = 'delta' THEN 1 ELSE 0 END), 0) FROM volumes WHERE project = ?1) AS BIGINT),
           CAST((SELECT COUNT(*) FROM backups WHERE project = ?1 AND status != 'error') AS BIGINT),
           CAST((SELECT COALESCE(SUM(size), 0) FROM backups WHERE project = ?1 AND status != 'error') AS BIGINT),
           CAST((SELECT COALESCE(SUM(stored_bytes), 0) FROM backups WHERE project = ?1 AND status != 'error') AS BIGINT)",
        &[&project],
    )?;
    Ok(Usage {
        volumes: u.get(0)?,
        volume_bytes: u.get(1)?,
        delta_volumes: u.get(2)?,
        backups: u.get(3)?,
        backup_bytes: u.get(4)?,
        stored_bytes: u.get(5)?,
    })
}

/// Refuses `ask` when it would take `project` over a limit; call inside the transaction
/// that then inserts the record.
pub(crate) fn reserve_on(s: &mut dyn Session, project: &str, ask: Ask) -> Result<(), CatalogError> {
    let limits = limits_on(s, project)?;
    let usage = usage_on(s, project)?;
    quota::check(project, &limits, &usage, ask)?;
    Ok(())
}

impl Catalog {
    pub fn quota_limits(&self, project: &str) -> Result<Limits, CatalogError> {
        self.read(|s| limits_on(s, project))
    }

    pub fn quota_usage(&self, project: &str) -> Result<Usage, CatalogError> {
        self.read(|s| usage_on(s, project))
    }

    /// Sets some of a project's limits in one transaction.
    pub fn set_quota(
        &self,
        project: &str,
        limits: &[(QuotaResource, i64)],
    ) -> Result<(), CatalogError> {
        fault!("catalog.set_quota", CatalogError::disk_full);
        self.write(|s| {
            for (resource, limit) in limits {
                s.execute(
                    "INSERT INTO quotas (project, resource, hard_limit) VALUES (?1, ?2, ?3)
                     ON CONFLICT (project, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
                    &[&project, resource, limit],
                )?;
            }
            Ok(())
        })
    }
}
