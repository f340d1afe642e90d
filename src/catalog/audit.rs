//! The audit log: one JSON object per action, per project.

use super::{Catalog, CatalogError};
use crate::faults::fault;

impl Catalog {
    /// Appends one JSON object to `project`'s audit log, at `at`.
    pub fn audit_at(
        &self,
        at: &str,
        project: &str,
        event: &serde_json::Value,
    ) -> Result<(), CatalogError> {
        fault!("catalog.audit_at", CatalogError::disk_full);
        self.read(|s| {
            s.execute(
                "INSERT INTO audit (at, event, project) VALUES (?1, ?2, ?3)",
                &[&at, &event.to_string(), &project],
            )
        })?;
        Ok(())
    }

    /// The audit log of the projects `scope` admits as JSON lines, oldest first.
    pub fn audit_lines(&self, scope: Option<&str>) -> Result<Vec<String>, CatalogError> {
        // By time: recover appends older history after what a rebuilt catalog has.
        self.read(|s| {
            s.query(
                "SELECT at, event FROM audit WHERE ?1 IS NULL OR project = ?1 ORDER BY at, seq",
                &[&scope],
            )
        })?
        .iter()
        .map(|r| Ok(audit_line(&r.get::<String>(0)?, &r.get::<String>(1)?)))
        .collect()
    }
}

/// An audit log line as the API shows it: `{"at": …, "event": …}`.
pub fn audit_line(at: &str, event: &str) -> String {
    format!("{{\"at\":\"{at}\",\"event\":{event}}}")
}
