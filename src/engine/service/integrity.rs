//! Keeping the catalog honest about the repository, and garbage collection that can never
//! take data a backup still needs.
//!
//! At start every backup the catalog calls available is checked against its index: one
//! whose index is missing or damaged becomes `error` with the object named, and so do the
//! incrementals that depend on it; damage stays confined to what it damages and the server
//! starts. When the index is back and readable at a later start, they are `available`
//! again.
//!
//! Packs are collected only when every reference is known: a pack is removed when no
//! readable index names it, and nothing at all is removed while some index is damaged or
//! some backup the catalog still counts on has no index (its packs are unknown). A moved or
//! damaged index therefore costs space until it is resolved, never data.

use std::collections::HashSet;

use super::Service;
use crate::catalog::{BackupRecord, Catalog, Status};
use crate::engine::EngineError;
use crate::repo::{RepoError, Repository};

const INDEX_MISSING: &str = "index missing";
const INDEX_DAMAGED: &str = "index damaged: ";
const DEPENDS_ON: &str = "depends on backup ";

/// Whether a backup is out of service because of its index or its parent's, rather than
/// because its own run failed: such a backup still owns its packs.
fn out_for_its_index(b: &BackupRecord) -> bool {
    b.status == Status::Error
        && (b.error == INDEX_MISSING
            || b.error.starts_with(INDEX_DAMAGED)
            || b.error.starts_with(DEPENDS_ON))
}

/// Why a backup's index cannot be used, or `None` when it reads.
fn index_problem(repo: &Repository, id: &str) -> Result<Option<String>, EngineError> {
    if !repo.has_index(id)? {
        return Ok(Some(INDEX_MISSING.to_string()));
    }
    match repo.read_index(id) {
        Ok(_) => Ok(None),
        Err(e @ (RepoError::Corrupt { .. } | RepoError::NotFound { .. })) => {
            Ok(Some(format!("{INDEX_DAMAGED}{e}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Checks every backup the catalog counts on against the repository (see the module doc).
/// Returns how many records changed state.
pub(super) fn check_indexes(catalog: &Catalog, repo: &Repository) -> Result<usize, EngineError> {
    let backups = catalog.list_backups(None, None)?;
    let mut changed = 0;
    let mut broken: Vec<(String, String)> = Vec::new();
    for b in &backups {
        if b.status != Status::Available && !out_for_its_index(b) {
            continue;
        }
        if b.error.starts_with(DEPENDS_ON) {
            continue; // decided with its parent below
        }
        match index_problem(repo, &b.id)? {
            Some(problem) => {
                if b.status == Status::Available || b.error != problem {
                    tracing::error!(backup = %b.id, problem, "backup taken out of service");
                    catalog.set_backup_status(&b.id, Status::Error, &problem)?;
                    changed += 1;
                }
                broken.push((b.id.clone(), problem));
            }
            None if b.status == Status::Error => {
                tracing::info!(backup = %b.id, "index readable again: backup back in service");
                catalog.set_backup_status(&b.id, Status::Available, "")?;
                changed += 1;
            }
            None => {}
        }
    }
    // Incrementals under a broken backup cannot be restored either.
    let mut out: HashSet<String> = broken.iter().map(|(id, _)| id.clone()).collect();
    let mut frontier = broken;
    while let Some((id, _)) = frontier.pop() {
        for child in catalog.children(&id)? {
            if out.insert(child.clone()) {
                let reason = format!("{DEPENDS_ON}{id}, whose index is missing or damaged");
                let record = catalog.get_backup(&child, None)?;
                if record.status == Status::Available || out_for_its_index(&record) {
                    if record.error != reason {
                        catalog.set_backup_status(&child, Status::Error, &reason)?;
                        changed += 1;
                    }
                    frontier.push((child, reason));
                }
            }
        }
    }
    // Dependents whose parent is whole again come back.
    for b in catalog.list_backups(None, None)? {
        if b.status == Status::Error && b.error.starts_with(DEPENDS_ON) && !out.contains(&b.id) {
            catalog.set_backup_status(&b.id, Status::Available, "")?;
            changed += 1;
        }
    }
    Ok(changed)
}

impl Service {
    /// Removes packs no readable index references, when every reference is known (see the
    /// module doc). The caller holds off backups (`gc_lock`). Returns (packs, bytes).
    pub(super) fn remove_unreferenced_packs(&self) -> Result<(u64, u64), EngineError> {
        collect_packs(&self.catalog, &self.repo)
    }
}

pub(super) fn collect_packs(
    catalog: &Catalog,
    repo: &Repository,
) -> Result<(u64, u64), EngineError> {
    let scan = repo.scan_references()?;
    if let Some((id, e)) = scan.unreadable.first() {
        tracing::warn!(backup = %id, error = %e, damaged = scan.unreadable.len(),
            "garbage collection skipped: a damaged index's packs are unknown");
        return Ok((0, 0));
    }
    let backups = catalog.list_backups(None, None)?;
    let mut unaccounted = Vec::new();
    for b in &backups {
        let counts =
            b.status == Status::Available || b.status == Status::Restoring || out_for_its_index(b);
        if counts && !repo.has_index(&b.id)? {
            unaccounted.push(b.id.clone());
        }
    }
    if !unaccounted.is_empty() {
        tracing::warn!(backups = ?unaccounted,
            "garbage collection skipped: backups without an index may own packs");
        return Ok((0, 0));
    }
    // Backups being written may name packs no index names yet (see `repo::writer`): the
    // markers of those this catalog knows to have ended are stale.
    let finished: HashSet<String> = backups
        .into_iter()
        .filter(|b| b.status != Status::Creating)
        .map(|b| b.id)
        .collect();
    Ok(repo.remove_packs_except(&scan.referenced, &|id| finished.contains(id))?)
}
