//! Projects, tokens and the token-hashing key. A token row holds the keyed hash of its
//! secret, never the secret.

use super::db::Row;
use super::{Catalog, CatalogError};
use crate::faults::fault;
use crate::kinds::Role;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectRecord {
    pub name: String,
    /// `None`: the server's `delta_enabled` setting.
    pub delta_enabled: Option<bool>,
    pub created_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub project: String,
    pub role: Role,
    pub description: String,
    pub created_at: String,
    pub last_used_at: String,
    pub revoked_at: String,
}

const TOKEN_COLUMNS: &str = "id, project, role, description, created_at, last_used_at, revoked_at";

fn token_from_row(r: &Row) -> Result<TokenRecord, CatalogError> {
    Ok(TokenRecord {
        id: r.get(0)?,
        project: r.get(1)?,
        role: r.get(2)?,
        description: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

fn project_from_row(r: &Row) -> Result<ProjectRecord, CatalogError> {
    Ok(ProjectRecord {
        name: r.get(0)?,
        delta_enabled: r.get(1)?,
        created_at: r.get(2)?,
    })
}

impl Catalog {
    /// The key token secrets are hashed with, made on first use. It lives in the catalog
    /// so every node sharing a catalog checks tokens alike.
    pub fn token_key(&self) -> Result<[u8; 32], CatalogError> {
        let read = |cat: &Catalog| -> Result<Option<Vec<u8>>, CatalogError> {
            cat.read(|s| s.query_opt("SELECT value FROM settings WHERE key = 'token_key'", &[]))?
                .map(|r| r.get(0))
                .transpose()
        };
        let existing = match read(self)? {
            Some(v) => v,
            None => {
                fault!("catalog.token_key", CatalogError::disk_full);
                // Nodes starting together may both make one: the first insert wins and
                // every node reads that one back.
                let key = crate::identity::token::new_key();
                self.read(|s| {
                    s.execute(
                        "INSERT INTO settings (key, value) VALUES ('token_key', ?1) ON CONFLICT DO NOTHING",
                        &[&key.as_slice()],
                    )
                })?;
                read(self)?.ok_or_else(|| CatalogError::Corrupt("token_key vanished".into()))?
            }
        };
        existing
            .try_into()
            .map_err(|_| CatalogError::Corrupt("token_key is not 32 bytes".into()))
    }

    pub fn create_project(&self, p: &ProjectRecord) -> Result<(), CatalogError> {
        fault!("catalog.create_project", CatalogError::disk_full);
        let n = self.read(|s| {
            s.execute(
                "INSERT INTO projects (name, delta_enabled, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                &[&p.name, &p.delta_enabled, &p.created_at],
            )
        })?;
        if n == 0 {
            return Err(CatalogError::NameTaken {
                kind: "project",
                name: p.name.clone(),
            });
        }
        Ok(())
    }

    pub fn get_project(&self, name: &str) -> Result<ProjectRecord, CatalogError> {
        self.read(|s| {
            s.query_opt(
                "SELECT name, delta_enabled, created_at FROM projects WHERE name = ?1",
                &[&name],
            )
        })?
        .map(|r| project_from_row(&r))
        .transpose()?
        .ok_or_else(|| CatalogError::NotFound {
            kind: "project",
            id: name.into(),
        })
    }

    pub fn list_projects(&self) -> Result<Vec<ProjectRecord>, CatalogError> {
        self.read(|s| {
            s.query(
                "SELECT name, delta_enabled, created_at FROM projects ORDER BY name",
                &[],
            )
        })?
        .iter()
        .map(project_from_row)
        .collect()
    }

    pub fn set_project_delta_enabled(
        &self,
        name: &str,
        enabled: Option<bool>,
    ) -> Result<(), CatalogError> {
        fault!("catalog.set_project", CatalogError::disk_full);
        let n = self.read(|s| {
            s.execute(
                "UPDATE projects SET delta_enabled = ?2 WHERE name = ?1",
                &[&name, &enabled],
            )
        })?;
        if n == 0 {
            return Err(CatalogError::NotFound {
                kind: "project",
                id: name.into(),
            });
        }
        Ok(())
    }

    /// Deletes an empty project with its tokens and quotas, in one transaction; `Ok(false)`
    /// when it still owns volumes or backups.
    pub fn delete_project(&self, name: &str) -> Result<bool, CatalogError> {
        fault!("catalog.delete_project", CatalogError::disk_full);
        self.write(|s| {
            let owned: i64 = s
                .query_one(
                    "SELECT CAST((SELECT COUNT(*) FROM volumes WHERE project = ?1)
                          + (SELECT COUNT(*) FROM backups WHERE project = ?1) AS BIGINT)",
                    &[&name],
                )?
                .get(0)?;
            if owned > 0 {
                return Ok(false);
            }
            let n = s.execute("DELETE FROM projects WHERE name = ?1", &[&name])?;
            if n == 0 {
                return Err(CatalogError::NotFound {
                    kind: "project",
                    id: name.into(),
                });
            }
            s.execute("DELETE FROM tokens WHERE project = ?1", &[&name])?;
            s.execute("DELETE FROM quotas WHERE project = ?1", &[&name])?;
            Ok(true)
        })
    }

    pub fn insert_token(&self, t: &TokenRecord, hash: &str) -> Result<(), CatalogError> {
        fault!("catalog.insert_token", CatalogError::disk_full);
        self.read(|s| {
            s.execute(
                &format!(
                    "INSERT INTO tokens ({TOKEN_COLUMNS}, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                &[
                    &t.id,
                    &t.project,
                    &t.role,
                    &t.description,
                    &t.created_at,
                    &t.last_used_at,
                    &t.revoked_at,
                    &hash,
                ],
            )
        })?;
        Ok(())
    }

    /// The live (not revoked) token whose secret hashes to `hash`.
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, CatalogError> {
        self.read(|s| {
            s.query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_at = ''"),
                &[&hash],
            )
        })?
        .map(|r| token_from_row(&r))
        .transpose()
    }

    pub fn get_token(&self, id: &str) -> Result<TokenRecord, CatalogError> {
        self.read(|s| {
            s.query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
                &[&id],
            )
        })?
        .map(|r| token_from_row(&r))
        .transpose()?
        .ok_or_else(|| CatalogError::NotFound {
            kind: "token",
            id: id.into(),
        })
    }

    pub fn list_tokens(&self, project: Option<&str>) -> Result<Vec<TokenRecord>, CatalogError> {
        self.read(|s| {
            s.query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE ?1 IS NULL OR project = ?1 ORDER BY created_at, id"
                ),
                &[&project],
            )
        })?
        .iter()
        .map(token_from_row)
        .collect()
    }

    pub fn revoke_token(&self, id: &str, at: &str) -> Result<(), CatalogError> {
        fault!("catalog.revoke_token", CatalogError::disk_full);
        let n = self.read(|s| {
            s.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at = ''",
                &[&id, &at],
            )
        })?;
        if n == 0 {
            self.get_token(id)?;
        }
        Ok(())
    }

    /// Removes a token nobody ever held (the first start's, when its file failed).
    pub fn delete_token(&self, id: &str) -> Result<(), CatalogError> {
        fault!("catalog.delete_token", CatalogError::disk_full);
        self.read(|s| s.execute("DELETE FROM tokens WHERE id = ?1", &[&id]))?;
        Ok(())
    }

    pub fn touch_token(&self, id: &str, at: &str) -> Result<(), CatalogError> {
        fault!("catalog.touch_token", CatalogError::disk_full);
        self.read(|s| {
            s.execute(
                "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
                &[&id, &at],
            )
        })?;
        Ok(())
    }
}
