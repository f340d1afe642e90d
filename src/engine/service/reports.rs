//! `blockdelta report` and `/metrics`: what the catalog and the repository say about
//! backups, policy runs, repository space and quotas, gathered for each ask.

use super::{EngineError, Service};
use crate::catalog::VolumeRecord;
use crate::clock::{format_unix_millis, now_unix_millis};
use crate::engine::InvalidRequest;
use crate::identity::{Caller, QuotaResource};
use crate::kinds::Status;
use crate::lifecycle::report::{Report, build, parse_since};

/// Where the repository is and how full.
#[derive(Clone, Debug, Default)]
pub struct RepositorySpace {
    pub location: String,
    pub used_bytes: u64,
    /// The file system under a local repository (an object store says nothing of it).
    pub total_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
}

pub struct ReportView {
    pub since: String,
    pub generated_at: String,
    pub report: Report,
    pub repository: RepositorySpace,
}

impl Service {
    /// The report of the caller's project (every project for an admin) since `since`
    /// ago (`24h` when empty).
    pub fn report(&self, caller: &Caller, since: &str) -> Result<ReportView, EngineError> {
        let window = parse_since(if since.is_empty() { "24h" } else { since }).map_err(|why| {
            InvalidRequest::BadPolicy {
                name: "report".into(),
                why,
            }
        })?;
        let now = now_unix_millis();
        let since = format_unix_millis(now - window);
        let scope = caller.visible();
        let volumes: Vec<VolumeRecord> = self.catalog.list_volumes(scope)?;
        let mut backups = self.catalog.list_backups(None, scope)?;
        backups
            .iter_mut()
            .for_each(|b| self.pending.overlay_backup(b));
        let runs = self.catalog.list_runs(scope, None, &since)?;
        Ok(ReportView {
            report: build(&volumes, &backups, &runs, &since),
            since,
            generated_at: format_unix_millis(now),
            repository: self.repository_space()?,
        })
    }

    fn repository_space(&self) -> Result<RepositorySpace, EngineError> {
        let location = self.repo.location();
        let (total_bytes, free_bytes) = if location.starts_with("s3://") {
            (None, None)
        } else {
            match filesystem_space(&location) {
                Some((total, free)) => (Some(total), Some(free)),
                None => (None, None),
            }
        };
        Ok(RepositorySpace {
            used_bytes: self.repo.stored_bytes()?,
            location,
            total_bytes,
            free_bytes,
        })
    }

    /// `/metrics`: the gauges set from the catalog and repository now, then every metric.
    pub fn metrics_text(&self) -> Result<String, EngineError> {
        let m = &self.metrics;
        let mut backups = self.catalog.list_backups(None, None)?;
        backups
            .iter_mut()
            .for_each(|b| self.pending.overlay_backup(b));
        for status in Status::ALL {
            let n = backups.iter().filter(|b| b.status == *status).count();
            m.backups
                .with_label_values(&[status.as_str()])
                .set(n as i64);
        }
        m.repository_bytes.set(self.repo.stored_bytes()? as i64);
        for project in self.catalog.list_projects()? {
            let limits = self.catalog.quota_limits(&project.name)?;
            let usage = self.catalog.quota_usage(&project.name)?;
            for r in QuotaResource::ALL {
                let labels = [project.name.as_str(), r.as_str()];
                m.quota_usage
                    .with_label_values(&labels)
                    .set(usage.shown(*r));
                m.quota_limit.with_label_values(&labels).set(limits.get(*r));
            }
        }
        Ok(m.encode())
    }
}

/// (total, free for unprivileged users) bytes of the file system holding `path`.
fn filesystem_space(path: &str) -> Option<(u64, u64)> {
    let c = std::ffi::CString::new(path).ok()?;
    // SAFETY: statvfs fills the struct we own from a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = st.f_frsize as u64;
    Some((st.f_blocks as u64 * unit, st.f_bavail as u64 * unit))
}
