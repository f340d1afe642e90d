//! Projects, tokens and quotas as use cases: who may see which project, the first
//! admin token of a data dir, tokens created (secret shown once) and revoked, limits
//! read and set. The checks of a role against an RPC live in `identity::rules`; here
//! is what depends on the records.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{Service, not_found};
use crate::catalog::{CatalogError, ProjectRecord, TokenRecord};
use crate::clock::now_rfc3339;
use crate::engine::{EngineError, InvalidRequest, Refusal};
use crate::faults::fault;
use crate::identity::quota::{Limits, Usage};
use crate::identity::{ADMIN_PROJECT, Caller, QuotaResource, Role, token, valid_project_name};

/// A token just made: its record and the secret, which exists nowhere else.
pub struct NewToken {
    pub record: TokenRecord,
    pub secret: String,
}

impl Service {
    /// The project, when `caller` may see it; another project is not found.
    pub fn project(&self, caller: &Caller, name: &str) -> Result<ProjectRecord, EngineError> {
        if !caller.sees(name) {
            return Err(EngineError::NotFound {
                kind: "project",
                id: name.into(),
            });
        }
        self.catalog.get_project(name).map_err(not_found)
    }

    /// Creates `name` if the catalog lacks it (recover, the first start).
    pub(super) fn ensure_project(&self, name: &str) -> Result<(), EngineError> {
        match self.catalog.create_project(&ProjectRecord {
            name: name.into(),
            delta_enabled: None,
            created_at: now_rfc3339(),
        }) {
            Ok(()) | Err(CatalogError::NameTaken { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn create_project(
        &self,
        caller: &Caller,
        name: &str,
        delta_enabled: Option<bool>,
    ) -> Result<ProjectRecord, EngineError> {
        if !valid_project_name(name) {
            return Err(InvalidRequest::BadProjectName { name: name.into() }.into());
        }
        let record = ProjectRecord {
            name: name.into(),
            delta_enabled,
            created_at: now_rfc3339(),
        };
        self.catalog
            .create_project(&record)
            .map_err(super::name_taken)?;
        self.audit_action(
            caller,
            name,
            "project.create",
            name,
            serde_json::json!({"delta_enabled": delta_enabled}),
        );
        Ok(record)
    }

    /// Every project for an admin; a member's or reader's own.
    pub fn list_projects(&self, caller: &Caller) -> Result<Vec<ProjectRecord>, EngineError> {
        let mut all = self.catalog.list_projects()?;
        all.retain(|p| caller.sees(&p.name));
        Ok(all)
    }

    pub fn update_project(
        &self,
        caller: &Caller,
        name: &str,
        delta_enabled: Option<bool>,
    ) -> Result<ProjectRecord, EngineError> {
        self.project(caller, name)?;
        self.catalog
            .set_project_delta_enabled(name, delta_enabled)
            .map_err(not_found)?;
        self.audit_action(
            caller,
            name,
            "project.update",
            name,
            serde_json::json!({"delta_enabled": delta_enabled}),
        );
        self.project(caller, name)
    }

    /// Deletes an empty project with its tokens and quotas; `admin` never.
    pub fn delete_project(&self, caller: &Caller, name: &str) -> Result<(), EngineError> {
        self.project(caller, name)?;
        if name == ADMIN_PROJECT {
            return Err(Refusal::AdminProjectStays.into());
        }
        if !self.catalog.delete_project(name).map_err(not_found)? {
            return Err(Refusal::ProjectNotEmpty { name: name.into() }.into());
        }
        self.audit_action(caller, name, "project.delete", name, serde_json::json!({}));
        Ok(())
    }

    pub fn create_token(
        &self,
        caller: &Caller,
        project: &str,
        role: Role,
        description: &str,
    ) -> Result<NewToken, EngineError> {
        self.project(caller, project)?;
        let new = self.mint_token(project, role, description)?;
        self.audit_action(
            caller,
            project,
            "token.create",
            &new.record.id,
            serde_json::json!({"role": role, "project": project}),
        );
        Ok(new)
    }

    fn mint_token(
        &self,
        project: &str,
        role: Role,
        description: &str,
    ) -> Result<NewToken, EngineError> {
        let secret = token::new_secret();
        let record = TokenRecord {
            id: token::new_id(),
            project: project.into(),
            role,
            description: description.into(),
            created_at: now_rfc3339(),
            last_used_at: String::new(),
            revoked_at: String::new(),
        };
        self.catalog
            .insert_token(&record, &token::hash(&self.token_key, &secret))?;
        Ok(NewToken { record, secret })
    }

    pub fn list_tokens(
        &self,
        caller: &Caller,
        project: Option<&str>,
    ) -> Result<Vec<TokenRecord>, EngineError> {
        if let Some(p) = project {
            self.project(caller, p)?;
        }
        let mut all = self.catalog.list_tokens(project.or(caller.visible()))?;
        all.retain(|t| caller.sees(&t.project));
        Ok(all)
    }

    pub fn revoke_token(&self, caller: &Caller, id: &str) -> Result<TokenRecord, EngineError> {
        let t = self.catalog.get_token(id).map_err(not_found)?;
        if !caller.sees(&t.project) {
            return Err(EngineError::NotFound {
                kind: "token",
                id: id.into(),
            });
        }
        self.catalog.revoke_token(id, &now_rfc3339())?;
        self.audit_action(
            caller,
            &t.project,
            "token.revoke",
            id,
            serde_json::json!({}),
        );
        Ok(self.catalog.get_token(id)?)
    }

    /// The live token a bearer secret is, if any: one keyed hash and one lookup.
    pub fn token_for_secret(&self, secret: &str) -> Result<Option<TokenRecord>, EngineError> {
        if !token::well_formed(secret) {
            return Ok(None);
        }
        Ok(self
            .catalog
            .token_by_hash(&token::hash(&self.token_key, secret))?)
    }

    /// Records that a token was used (the auth layer calls it at most once a minute).
    pub fn touch_token(&self, id: &str) -> Result<(), EngineError> {
        Ok(self.catalog.touch_token(id, &now_rfc3339())?)
    }

    /// Whether delta volumes may be created in `project`: its own setting, else the
    /// server's.
    pub fn delta_enabled(&self, project: &str, server_default: bool) -> bool {
        self.catalog
            .get_project(project)
            .ok()
            .and_then(|p| p.delta_enabled)
            .unwrap_or(server_default)
    }

    pub fn quota(&self, caller: &Caller, project: &str) -> Result<(Limits, Usage), EngineError> {
        self.project(caller, project)?;
        Ok((
            self.catalog.quota_limits(project)?,
            self.catalog.quota_usage(project)?,
        ))
    }

    pub fn set_quota(
        &self,
        caller: &Caller,
        project: &str,
        limits: &[(QuotaResource, i64)],
    ) -> Result<Limits, EngineError> {
        self.project(caller, project)?;
        if let Some((r, l)) = limits.iter().find(|(_, l)| *l < -1) {
            return Err(InvalidRequest::BadQuotaLimit {
                resource: *r,
                limit: *l,
            }
            .into());
        }
        self.catalog.set_quota(project, limits)?;
        let shown: serde_json::Map<String, serde_json::Value> = limits
            .iter()
            .map(|(r, l)| (r.as_str().to_string(), (*l).into()))
            .collect();
        self.audit_action(caller, project, "quota.set", project, shown.into());
        Ok(self.catalog.quota_limits(project)?)
    }

    /// On a data dir with no token yet (a fresh one, or one an earlier version made):
    /// creates an admin token of the `admin` project and writes its secret to `path`
    /// (0600, written whole: temporary file, fsync, rename). Returns whether it did.
    pub fn bootstrap_admin_token(&self, path: &Path) -> Result<bool, EngineError> {
        self.ensure_project(ADMIN_PROJECT)?;
        if !self.catalog.list_tokens(None)?.is_empty() {
            return Ok(false);
        }
        let new = self.mint_token(ADMIN_PROJECT, Role::Admin, "created by the first start")?;
        let tmp = path.with_extension("token.tmp");
        let write = || -> std::io::Result<()> {
            fault!("engine.admin_token.write", |e| e);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(format!("{}\n", new.secret).as_bytes())?;
            fault!("engine.admin_token.fsync", |e| e);
            f.sync_all()?;
            fault!("engine.admin_token.rename", |e| e);
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        if let Err(e) = write() {
            // No file, no token: the next start tries again instead of leaving an admin
            // token nobody holds.
            if let Err(rm) = self.catalog.delete_token(&new.record.id) {
                tracing::error!(error = %rm, "cannot remove the admin token whose file failed");
            }
            if let Err(rm) = std::fs::remove_file(&tmp)
                && rm.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %tmp.display(), error = %rm, "cannot remove a partial admin token file");
            }
            return Err(EngineError::io(path.display(), e));
        }
        self.audit_action(
            &Caller::system(),
            ADMIN_PROJECT,
            "token.create",
            &new.record.id,
            serde_json::json!({"role": Role::Admin, "project": ADMIN_PROJECT, "file": path.display().to_string()}),
        );
        Ok(true)
    }
}
