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
    let v = s.query_one(
        "SELECT CAST(COALESCE(SUM(CASE WHEN kind != 'delta' THEN 1 ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN kind != 'delta' THEN size ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN kind = 'delta' THEN 1 ELSE 0 END), 0) AS BIGINT)
         FROM volumes WHERE project = ?1",
        &[&project],
    )?;
    let b = s.query_one(
        "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(size), 0) AS BIGINT),
                CAST(COALESCE(SUM(stored_bytes), 0) AS BIGINT)
         FROM backups WHERE project = ?1 AND status != 'error'",
        &[&project],
    )?;
    Ok(Usage {
        volumes: v.get(0)?,
        volume_bytes: v.get(1)?,
        backups: b.get(0)?,
        backup_bytes: b.get(1)?,
        delta_volumes: v.get(2)?,
        stored_bytes: b.get(2)?,
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
