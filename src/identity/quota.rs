//! Quota arithmetic (cinder's semantics): a limit per resource, -1 = unlimited, and the
//! check a request must pass before anything is created. The catalog runs the check in
//! the transaction that inserts the record, so concurrent requests cannot pass it together.

use super::QuotaResource;

pub const UNLIMITED: i64 = -1;
pub const GIB: u64 = 1 << 30;

/// A project's limits, one per resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub volumes: i64,
    pub gigabytes: i64,
    pub backups: i64,
    pub backup_gigabytes: i64,
    pub delta_volumes: i64,
}

impl Default for Limits {
    /// Unlimited: the server's defaults until an operator sets a project's.
    fn default() -> Self {
        Limits {
            volumes: UNLIMITED,
            gigabytes: UNLIMITED,
            backups: UNLIMITED,
            backup_gigabytes: UNLIMITED,
            delta_volumes: UNLIMITED,
        }
    }
}

impl Limits {
    pub fn get(&self, r: QuotaResource) -> i64 {
        match r {
            QuotaResource::Volumes => self.volumes,
            QuotaResource::Gigabytes => self.gigabytes,
            QuotaResource::Backups => self.backups,
            QuotaResource::BackupGigabytes => self.backup_gigabytes,
            QuotaResource::DeltaVolumes => self.delta_volumes,
        }
    }

    pub fn set(&mut self, r: QuotaResource, limit: i64) {
        let slot = match r {
            QuotaResource::Volumes => &mut self.volumes,
            QuotaResource::Gigabytes => &mut self.gigabytes,
            QuotaResource::Backups => &mut self.backups,
            QuotaResource::BackupGigabytes => &mut self.backup_gigabytes,
            QuotaResource::DeltaVolumes => &mut self.delta_volumes,
        };
        *slot = limit;
    }
}

/// What a project holds now. Counts are records; sizes are exact bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub volumes: u64,
    pub volume_bytes: u64,
    pub backups: u64,
    pub backup_bytes: u64,
    pub delta_volumes: u64,
    pub stored_bytes: u64,
}

impl Usage {
    /// The figure a limit is compared with: a count, or bytes for the gigabyte quotas.
    fn amount(&self, r: QuotaResource) -> u64 {
        match r {
            QuotaResource::Volumes => self.volumes,
            QuotaResource::Gigabytes => self.volume_bytes,
            QuotaResource::Backups => self.backups,
            QuotaResource::BackupGigabytes => self.backup_bytes,
            QuotaResource::DeltaVolumes => self.delta_volumes,
        }
    }

    /// As shown: counts, and GiB rounded up for the gigabyte quotas.
    pub fn shown(&self, r: QuotaResource) -> i64 {
        let a = self.amount(r);
        (if is_gigabytes(r) { a.div_ceil(GIB) } else { a }) as i64
    }
}

fn is_gigabytes(r: QuotaResource) -> bool {
    matches!(r, QuotaResource::Gigabytes | QuotaResource::BackupGigabytes)
}

/// A request over a limit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "quota {resource} of project {project} exceeded: limit {limit}{unit}, in use {in_use}{unit}, asked {asked}{unit}"
)]
pub struct QuotaExceeded {
    pub project: String,
    pub resource: QuotaResource,
    pub limit: i64,
    pub in_use: String,
    pub asked: String,
    pub unit: &'static str,
}

/// What one request adds: `count` records of `bytes` each.
#[derive(Clone, Copy, Debug)]
pub struct Ask {
    pub count: QuotaResource,
    pub size: Option<(QuotaResource, u64)>,
}

/// Checks that `usage` plus the request stays within `limits`.
pub fn check(project: &str, limits: &Limits, usage: &Usage, ask: Ask) -> Result<(), QuotaExceeded> {
    let mut wants = vec![(ask.count, 1u64)];
    wants.extend(ask.size);
    for (resource, add) in wants {
        let limit = limits.get(resource);
        if limit < 0 {
            continue;
        }
        let (cap, unit) = if is_gigabytes(resource) {
            ((limit as u64).saturating_mul(GIB), " GiB")
        } else {
            (limit as u64, "")
        };
        let used = usage.amount(resource);
        if used.saturating_add(add) > cap {
            let shown = |b: u64| {
                if is_gigabytes(resource) {
                    format!("{:.2}", b as f64 / GIB as f64)
                } else {
                    b.to_string()
                }
            };
            return Err(QuotaExceeded {
                project: project.into(),
                resource,
                limit,
                in_use: shown(used),
                asked: shown(add),
                unit,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_gigabytes() {
        let limits = Limits {
            backups: 3,
            backup_gigabytes: 1,
            ..Limits::default()
        };
        let ask = |bytes| Ask {
            count: QuotaResource::Backups,
            size: Some((QuotaResource::BackupGigabytes, bytes)),
        };
        let mut usage = Usage::default();
        assert!(check("p", &limits, &usage, ask(GIB / 2)).is_ok());
        usage.backups = 1;
        usage.backup_bytes = GIB / 2;
        assert!(check("p", &limits, &usage, ask(GIB / 2)).is_ok());
        let e = check("p", &limits, &usage, ask(GIB / 2 + 1)).unwrap_err();
        assert_eq!(e.resource, QuotaResource::BackupGigabytes);
        assert!(e.to_string().contains("limit 1 GiB"), "{e}");
        usage.backups = 3;
        let e = check("p", &limits, &usage, ask(1)).unwrap_err();
        assert_eq!((e.resource, e.limit), (QuotaResource::Backups, 3));
        assert!(e.to_string().contains("in use 3"), "{e}");
        assert!(check("p", &Limits::default(), &usage, ask(u64::MAX)).is_ok());
        assert_eq!(
            Usage {
                volume_bytes: GIB + 1,
                ..Usage::default()
            }
            .shown(QuotaResource::Gigabytes),
            2
        );
    }
}
