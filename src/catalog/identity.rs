//! Projects, tokens and the token-hashing key. A token row holds the keyed hash of its
//! secret, never the secret.

use rusqlite::{OptionalExtension, Row, params};

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

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
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

fn project_from_row(r: &Row<'_>) -> rusqlite::Result<ProjectRecord> {
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
        let conn = self.conn();
        let existing: Option<Vec<u8>> = conn
            .query_row(
                "SELECT value FROM settings WHERE key = 'token_key'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(v) = existing {
            return v
                .try_into()
                .map_err(|_| CatalogError::Corrupt("token_key is not 32 bytes".into()));
        }
        fault!("catalog.token_key", CatalogError::disk_full);
        let key = crate::identity::token::new_key();
        conn.execute(
            "INSERT INTO settings (key, value) VALUES ('token_key', ?1)",
            [key.to_vec()],
        )?;
        Ok(key)
    }

    pub fn create_project(&self, p: &ProjectRecord) -> Result<(), CatalogError> {
        fault!("catalog.create_project", CatalogError::disk_full);
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO projects (name, delta_enabled, created_at) VALUES (?1, ?2, ?3)",
            params![p.name, p.delta_enabled, p.created_at],
        )?;
        if n == 0 {
            return Err(CatalogError::NameTaken {
                kind: "project",
                name: p.name.clone(),
            });
        }
        Ok(())
    }

    pub fn get_project(&self, name: &str) -> Result<ProjectRecord, CatalogError> {
        self.conn()
            .query_row(
                "SELECT name, delta_enabled, created_at FROM projects WHERE name = ?1",
                [name],
                project_from_row,
            )
            .optional()?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "project",
                id: name.into(),
            })
    }

    pub fn list_projects(&self) -> Result<Vec<ProjectRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, delta_enabled, created_at FROM projects ORDER BY name")?;
        let rows = stmt.query_map([], project_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_project_delta_enabled(
        &self,
        name: &str,
        enabled: Option<bool>,
    ) -> Result<(), CatalogError> {
        fault!("catalog.set_project", CatalogError::disk_full);
        let n = self.conn().execute(
            "UPDATE projects SET delta_enabled = ?2 WHERE name = ?1",
            params![name, enabled],
        )?;
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
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let owned: i64 = tx.query_row(
            "SELECT (SELECT COUNT(*) FROM volumes WHERE project = ?1)
                  + (SELECT COUNT(*) FROM backups WHERE project = ?1)",
            [name],
            |r| r.get(0),
        )?;
        if owned > 0 {
            return Ok(false);
        }
        let n = tx.execute("DELETE FROM projects WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(CatalogError::NotFound {
                kind: "project",
                id: name.into(),
            });
        }
        tx.execute("DELETE FROM tokens WHERE project = ?1", [name])?;
        tx.execute("DELETE FROM quotas WHERE project = ?1", [name])?;
        tx.commit()?;
        Ok(true)
    }

    pub fn insert_token(&self, t: &TokenRecord, hash: &str) -> Result<(), CatalogError> {
        fault!("catalog.insert_token", CatalogError::disk_full);
        self.conn().execute(
            &format!(
                "INSERT INTO tokens ({TOKEN_COLUMNS}, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                t.id,
                t.project,
                t.role,
                t.description,
                t.created_at,
                t.last_used_at,
                t.revoked_at,
                hash
            ],
        )?;
        Ok(())
    }

    /// The live (not revoked) token whose secret hashes to `hash`.
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_at = ''"),
                [hash],
                token_from_row,
            )
            .optional()?)
    }

    pub fn get_token(&self, id: &str) -> Result<TokenRecord, CatalogError> {
        self.conn()
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
                [id],
                token_from_row,
            )
            .optional()?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "token",
                id: id.into(),
            })
    }

    pub fn list_tokens(&self, project: Option<&str>) -> Result<Vec<TokenRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE ?1 IS NULL OR project = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([project], token_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn revoke_token(&self, id: &str, at: &str) -> Result<(), CatalogError> {
        fault!("catalog.revoke_token", CatalogError::disk_full);
        let n = self.conn().execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at = ''",
            params![id, at],
        )?;
        if n == 0 {
            self.get_token(id)?;
        }
        Ok(())
    }

    /// Removes a token nobody ever held (the first start's, when its file failed).
    pub fn delete_token(&self, id: &str) -> Result<(), CatalogError> {
        fault!("catalog.delete_token", CatalogError::disk_full);
        self.conn()
            .execute("DELETE FROM tokens WHERE id = ?1", [id])?;
        Ok(())
    }

    pub fn touch_token(&self, id: &str, at: &str) -> Result<(), CatalogError> {
        fault!("catalog.touch_token", CatalogError::disk_full);
        self.conn().execute(
            "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }
}
