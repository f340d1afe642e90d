//! Which pairs of backups make a delta (DESIGN.md §6, Oracle's rules): both of one
//! volume, the first older, the second an incremental whose chain reaches back to
//! the first with no full backup between, the volume never resized between them,
//! every backup involved available. Decided from catalog records alone: no
//! repository object is read here.

use super::error::{DELTA_SOURCE_TYPE, DeltaError};
use crate::catalog::{BackupRecord, Catalog, CatalogError, Status};
use crate::kinds::BackupKind;
use crate::repo::TRACKING_BLOCK_SIZE;

/// Smallest and largest change block size, in bytes (Oracle's bounds).
pub const MIN_CHANGE_BLOCK_SIZE: u64 = TRACKING_BLOCK_SIZE;
pub const MAX_CHANGE_BLOCK_SIZE: u64 = 1 << 20;

/// What a caller asks a delta of, as it arrived.
#[derive(Clone, Debug, Default)]
pub struct DeltaRequest {
    pub source_type: String,
    pub first_backup_id: String,
    pub second_backup_id: String,
    /// 0 = the default, 4096.
    pub change_block_size: u64,
    /// Oracle's performance units per GB; `None` = the default level.
    pub vpus_per_gb: Option<i64>,
}

/// A validated delta: the backups it spans and its granularity.
#[derive(Clone, Debug)]
pub struct DeltaSource {
    pub first: BackupRecord,
    pub second: BackupRecord,
    /// The backups after `first` up to and including `second`, oldest first:
    /// the delta is the union of their change bitmaps.
    pub span: Vec<String>,
    pub change_block_size: u64,
}

impl DeltaSource {
    pub fn volume_size(&self) -> u64 {
        self.second.size
    }
}

/// The change block size a request means, or why it is not one.
pub fn change_block_size(bytes: u64) -> Result<u64, DeltaError> {
    let size = if bytes == 0 {
        MIN_CHANGE_BLOCK_SIZE
    } else {
        bytes
    };
    if size.is_power_of_two() && (MIN_CHANGE_BLOCK_SIZE..=MAX_CHANGE_BLOCK_SIZE).contains(&size) {
        Ok(size)
    } else {
        Err(DeltaError::ChangeBlockSize(bytes))
    }
}

fn backup_id(which: &'static str, id: &str) -> Result<(), DeltaError> {
    if crate::catalog::well_formed_backup_id(id) {
        Ok(())
    } else {
        Err(DeltaError::MalformedId {
            which,
            id: id.to_string(),
        })
    }
}

/// The backups the caller names are looked up within `scope` (the projects it sees:
/// another project's backup is not found); those a chain leads to share the volume's
/// project, so `None` there.
fn lookup(
    catalog: &Catalog,
    scope: Option<&str>,
    which: &'static str,
    id: &str,
) -> Result<BackupRecord, DeltaError> {
    catalog.get_backup(id, scope).map_err(|e| match e {
        CatalogError::NotFound { .. } => DeltaError::NotFound {
            which,
            id: id.to_string(),
        },
        other => other.into(),
    })
}

/// Readable: `restoring` only reads a backup, it does not change it.
fn readable(b: &BackupRecord) -> Result<(), DeltaError> {
    if b.status == Status::Available || b.status == Status::Restoring {
        Ok(())
    } else {
        Err(DeltaError::NotAvailable {
            id: b.id.clone(),
            status: b.status.to_string(),
        })
    }
}

/// One backup whose own bitmaps are asked for (its change bitmap, or what it
/// holds): well formed, known and readable.
pub fn check_single(
    catalog: &Catalog,
    scope: Option<&str>,
    id: &str,
) -> Result<BackupRecord, DeltaError> {
    backup_id("second", id)?;
    let backup = lookup(catalog, scope, "second", id)?;
    readable(&backup)?;
    Ok(backup)
}

/// Checks a delta volume request: source type and performance level first, then
/// the pair of backups as `check_pair` does.
pub fn check_request(
    catalog: &Catalog,
    scope: Option<&str>,
    req: &DeltaRequest,
) -> Result<DeltaSource, DeltaError> {
    if req.source_type != DELTA_SOURCE_TYPE {
        return Err(DeltaError::UnknownSourceType(req.source_type.clone()));
    }
    match req.vpus_per_gb {
        Some(0) => return Err(DeltaError::LowerCostPerformance),
        Some(v) if !(0..=120).contains(&v) || v % 10 != 0 => {
            return Err(DeltaError::BadPerformance(v));
        }
        _ => {}
    }
    check_pair(
        catalog,
        scope,
        &req.first_backup_id,
        &req.second_backup_id,
        req.change_block_size,
    )
}

/// Checks that (first, second) make a delta at `change_block_size` bytes (0 =
/// 4096), in the order a caller fixes them: the arguments, then existence, then
/// how the two relate, then their state.
pub fn check_pair(
    catalog: &Catalog,
    scope: Option<&str>,
    first_id: &str,
    second_id: &str,
    change_block_size_bytes: u64,
) -> Result<DeltaSource, DeltaError> {
    let change_block_size = change_block_size(change_block_size_bytes)?;
    backup_id("first", first_id)?;
    backup_id("second", second_id)?;
    if first_id == second_id {
        return Err(DeltaError::SameBackup(first_id.to_string()));
    }
    let first = lookup(catalog, scope, "first", first_id)?;
    let second = lookup(catalog, scope, "second", second_id)?;
    if first.volume_id != second.volume_id {
        return Err(DeltaError::DifferentVolumes {
            first: first.id,
            first_volume: first.volume_id,
            second: second.id,
            second_volume: second.volume_id,
        });
    }
    let span = match ancestry(catalog, &first, &second)? {
        Ancestry::Reaches(span) => span,
        Ancestry::Misses { root } => {
            return Err(if first.created_at >= second.created_at {
                DeltaError::NotOlder {
                    first: first.id,
                    second: second.id,
                }
            } else if second.kind == BackupKind::Full {
                DeltaError::SecondIsFull(second.id)
            } else if root.created_at > first.created_at {
                DeltaError::FullBetween {
                    first: first.id,
                    second: second.id,
                    full: root.id,
                }
            } else {
                // Same chain, older, yet not an ancestor: a failed or deleted branch.
                DeltaError::NotAvailable {
                    id: first.id,
                    status: format!("{} and not an ancestor of {}", first.status, second.id),
                }
            });
        }
    };
    if second.kind == BackupKind::Full {
        return Err(DeltaError::SecondIsFull(second.id));
    }
    let mut members = Vec::with_capacity(span.len() + 1);
    members.push(first.clone());
    for id in &span[..span.len() - 1] {
        members.push(lookup(catalog, None, "intermediate", id)?);
    }
    members.push(second.clone());
    if let Some(resized) = members.iter().find(|b| b.size != second.size) {
        return Err(DeltaError::Resized {
            first: resized.id.clone(),
            first_size: resized.size,
            second: second.id,
            second_size: second.size,
        });
    }
    for b in &members {
        readable(b)?;
    }
    Ok(DeltaSource {
        first,
        second,
        span,
        change_block_size,
    })
}

enum Ancestry {
    /// `first` is an ancestor of `second`: the backups after it, oldest first.
    Reaches(Vec<String>),
    /// It is not; `root` is the full that starts `second`'s chain.
    Misses { root: Box<BackupRecord> },
}

/// Walks `second`'s parents up to `first` or to the chain's full.
fn ancestry(
    catalog: &Catalog,
    first: &BackupRecord,
    second: &BackupRecord,
) -> Result<Ancestry, DeltaError> {
    let mut span = vec![second.id.clone()];
    let mut at = second.clone();
    // A parent loop in a damaged catalog must not spin forever.
    for _ in 0..100_000 {
        let Some(parent) = at.parent_id.clone() else {
            return Ok(Ancestry::Misses { root: Box::new(at) });
        };
        if parent == first.id {
            span.reverse();
            return Ok(Ancestry::Reaches(span));
        }
        at = lookup(catalog, None, "intermediate", &parent)?;
        span.push(at.id.clone());
    }
    Err(DeltaError::Catalog(CatalogError::Corrupt(format!(
        "the parent chain of backup {} does not end",
        second.id
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_block_sizes_are_powers_of_two_within_oracles_bounds() {
        assert_eq!(change_block_size(0).unwrap(), 4096);
        for ok in [4096, 8192, 65536, 1 << 20] {
            assert_eq!(change_block_size(ok).unwrap(), ok);
        }
        for bad in [1, 512, 2048, 4095, 4097, 12288, 2 << 20, u64::MAX] {
            assert!(change_block_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backup_ids() {
        use crate::catalog::well_formed_backup_id;
        assert!(well_formed_backup_id("bkp-0123456789abcdef"));
        assert!(!well_formed_backup_id("bkp-0123456789ABCDEF"));
        assert!(!well_formed_backup_id("bkp-0123"));
        assert!(!well_formed_backup_id("vol-0123456789abcdef"));
        assert!(!well_formed_backup_id(""));
    }
}
