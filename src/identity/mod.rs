//! Who is calling and what they may do (DESIGN.md §10): the [`Caller`] every use case
//! receives, bearer tokens ([`token`]), the one table of RPC → least role ([`rules`]),
//! the operator's volume roots ([`roots`]) and quota arithmetic ([`quota`]).
//!
//! Pure: no I/O but the path canonicalisation of `roots`. Tokens are stored by the
//! catalog, checked by the API's auth layer; the engine filters rows by
//! [`Caller::visible`], so another project's resource is simply not found.

pub mod quota;
pub mod roots;
pub mod rules;
pub mod token;

pub use crate::kinds::{QuotaResource, Role};

/// The project every data dir has: it owns what an earlier version made, and the first
/// admin token is its.
pub const ADMIN_PROJECT: &str = "admin";

/// The authenticated caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's project.
    pub project: String,
    pub role: Role,
    /// `tok-…`; `system` for the server's own work (startup, recover).
    pub token_id: String,
    /// The project an admin acts for (`x-blockdelta-project`); `None` otherwise.
    pub acting_for: Option<String>,
}

impl Caller {
    /// The server itself: startup checks, recover, internal bookkeeping.
    pub fn system() -> Caller {
        Caller {
            project: ADMIN_PROJECT.into(),
            role: Role::Admin,
            token_id: "system".into(),
            acting_for: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The one project whose rows this caller sees, or `None` for every project (an
    /// admin not acting for one).
    pub fn visible(&self) -> Option<&str> {
        match (&self.acting_for, self.role) {
            (Some(p), _) => Some(p),
            (None, Role::Admin) => None,
            (None, _) => Some(&self.project),
        }
    }

    /// The project new volumes and backups go to.
    pub fn owner(&self) -> &str {
        self.acting_for.as_deref().unwrap_or(&self.project)
    }

    /// Whether a row of `project` is this caller's to see.
    pub fn sees(&self, project: &str) -> bool {
        self.visible().is_none_or(|p| p == project)
    }

    /// What the audit log records of the caller, beside each event.
    pub fn audit_fields(&self) -> serde_json::Value {
        let mut fields = serde_json::json!({
            "project": self.project,
            "token_id": self.token_id,
            "role": self.role.as_str(),
        });
        if let Some(p) = &self.acting_for {
            fields["acting_for"] = p.as_str().into();
        }
        fields
    }
}

/// Project names: 1–63 of `[a-z0-9_-]`, starting with a letter or digit (they appear in
/// IQNs, file names and logs, so nothing that needs quoting).
pub fn valid_project_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, acting_for: Option<&str>) -> Caller {
        Caller {
            project: "p".into(),
            role,
            token_id: "tok-1".into(),
            acting_for: acting_for.map(Into::into),
        }
    }

    #[test]
    fn visibility_and_ownership() {
        assert_eq!(caller(Role::Admin, None).visible(), None);
        assert_eq!(caller(Role::Admin, Some("b")).visible(), Some("b"));
        assert_eq!(caller(Role::Admin, Some("b")).owner(), "b");
        assert_eq!(caller(Role::Member, None).visible(), Some("p"));
        assert!(caller(Role::Admin, None).sees("anything"));
        assert!(!caller(Role::Reader, None).sees("q"));
        assert!(Role::Admin.at_least(Role::Member) && !Role::Reader.at_least(Role::Member));
    }

    #[test]
    fn project_names() {
        for ok in ["a", "team-7", "0x", "a_b"] {
            assert!(valid_project_name(ok), "{ok}");
        }
        for bad in ["", "-a", "A", "a b", "a/b", &"x".repeat(64)] {
            assert!(!valid_project_name(bad), "{bad}");
        }
    }
}
