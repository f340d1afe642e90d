//! The catalog's schema history, applied in order at open. SQLite counts what has run in
//! `PRAGMA user_version`; version 0 is the schema of the first release, and a data dir
//! made by any earlier version upgrades here without a manual step. PostgreSQL (new with
//! clusters) starts at the schema SQLite reached by version 1, counted in
//! `schema_version`; later versions are one text both databases run.

use rusqlite::Connection;

use super::CatalogError;
use super::db::Session;

/// The first release's tables (what a data dir without a user_version holds).
const V0: &str = "
CREATE TABLE IF NOT EXISTS volumes (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, path TEXT NOT NULL,
    size INTEGER NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS backups (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, volume_id TEXT NOT NULL,
    name TEXT NOT NULL, kind TEXT NOT NULL, parent_id TEXT, chain_id TEXT NOT NULL,
    status TEXT NOT NULL, size INTEGER NOT NULL, compression TEXT NOT NULL,
    changed_blocks INTEGER NOT NULL DEFAULT 0, allocated_blocks INTEGER NOT NULL DEFAULT 0,
    stored_bytes INTEGER NOT NULL DEFAULT 0, content_hash TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, completed_at TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS backups_volume ON backups(volume_id);
CREATE INDEX IF NOT EXISTS backups_parent ON backups(parent_id);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, event TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS delta_sources (
    volume_id TEXT PRIMARY KEY, first_backup_id TEXT NOT NULL, second_backup_id TEXT NOT NULL,
    change_block_size INTEGER NOT NULL, changed_bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS delta_sources_first ON delta_sources(first_backup_id);
CREATE INDEX IF NOT EXISTS delta_sources_second ON delta_sources(second_backup_id);
CREATE TABLE IF NOT EXISTS attachments (
    volume_id TEXT PRIMARY KEY, target_name TEXT NOT NULL UNIQUE, initiator TEXT NOT NULL,
    chap_user TEXT NOT NULL, chap_secret TEXT NOT NULL, block_size INTEGER NOT NULL,
    read_only INTEGER NOT NULL, attached_at TEXT NOT NULL);
";

/// Projects, tokens and quotas (DESIGN.md §10). Everything that existed goes to the
/// `admin` project; volume names become unique per project (SQLite cannot drop a UNIQUE
/// constraint, so the table is rebuilt).
const V1: &str = "
CREATE TABLE projects (
    name TEXT PRIMARY KEY, delta_enabled INTEGER, created_at TEXT NOT NULL);
INSERT INTO projects (name, delta_enabled, created_at)
    VALUES ('admin', NULL, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));
CREATE TABLE tokens (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL DEFAULT '', revoked_at TEXT NOT NULL DEFAULT '');
CREATE TABLE quotas (
    project TEXT NOT NULL, resource TEXT NOT NULL, hard_limit INTEGER NOT NULL,
    PRIMARY KEY (project, resource));
CREATE TABLE settings (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE volumes_v1 (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    path TEXT NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, UNIQUE (project, name));
INSERT INTO volumes_v1 (id, project, name, kind, path, size, status, error, created_at)
    SELECT id, 'admin', name, kind, path, size, status, error, created_at FROM volumes;
DROP TABLE volumes;
ALTER TABLE volumes_v1 RENAME TO volumes;
ALTER TABLE backups ADD COLUMN project TEXT NOT NULL DEFAULT 'admin';
CREATE INDEX backups_project ON backups(project);
ALTER TABLE audit ADD COLUMN project TEXT NOT NULL DEFAULT 'admin';
CREATE INDEX audit_project ON audit(project);
";

/// Nodes, the jobs they hold with a lease, and which node serves an attachment
/// (DESIGN.md §11). Both databases.
const V2: &str = "
CREATE TABLE nodes (
    name TEXT PRIMARY KEY, grpc_address TEXT NOT NULL, iscsi_address TEXT NOT NULL,
    version TEXT NOT NULL, started_at TEXT NOT NULL, heartbeat_ms BIGINT NOT NULL);
CREATE TABLE jobs (
    volume_id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, node TEXT NOT NULL,
    lease_until_ms BIGINT NOT NULL, started_at TEXT NOT NULL);
CREATE INDEX jobs_node ON jobs(node);
ALTER TABLE attachments ADD COLUMN node TEXT NOT NULL DEFAULT '';
";

/// When a backup became a synthetic full (DESIGN.md §12). Both databases.
const V3: &str = "
ALTER TABLE backups ADD COLUMN merged_at TEXT NOT NULL DEFAULT '';
";

/// Policies, the volumes they are assigned to (with the last slot run, which makes the
/// scheduler's one catch-up after downtime) and their runs (DESIGN.md §12). Both databases.
const V4: &str = "
CREATE TABLE policies (
    project TEXT NOT NULL, name TEXT NOT NULL, schedule TEXT NOT NULL,
    incremental BIGINT NOT NULL, full_every BIGINT NOT NULL, keep_last BIGINT NOT NULL,
    keep_days BIGINT NOT NULL, copy_to TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (project, name));
CREATE TABLE policy_volumes (
    project TEXT NOT NULL, policy TEXT NOT NULL, volume_id TEXT NOT NULL,
    last_slot_ms BIGINT NOT NULL, runs_since_full BIGINT NOT NULL, assigned_at TEXT NOT NULL,
    PRIMARY KEY (project, policy, volume_id));
CREATE INDEX policy_volumes_volume ON policy_volumes(volume_id);
CREATE TABLE policy_runs (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, policy TEXT NOT NULL, volume_id TEXT NOT NULL,
    slot_ms BIGINT NOT NULL, node TEXT NOT NULL, backup_id TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', pruned TEXT NOT NULL DEFAULT '',
    copied_to TEXT NOT NULL DEFAULT '', started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL DEFAULT '');
CREATE INDEX policy_runs_policy ON policy_runs(project, policy, started_at);
";

/// How each backup found its changes and how much of its volume it read (the
/// changed-blocks issue's `change_source`, `read_bytes`). Both databases.
const V5: &str = "
ALTER TABLE backups ADD COLUMN change_source TEXT NOT NULL DEFAULT '';
ALTER TABLE backups ADD COLUMN read_bytes BIGINT NOT NULL DEFAULT 0;
";

const MIGRATIONS: &[&str] = &[V0, V1, V2, V3, V4, V5];

/// PostgreSQL's first version: SQLite's tables as of version 1, in PostgreSQL's types.
const PG_V1: &str = "
CREATE TABLE volumes (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    path TEXT NOT NULL, size BIGINT NOT NULL, status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, UNIQUE (project, name));
CREATE TABLE backups (
    seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, volume_id TEXT NOT NULL,
    name TEXT NOT NULL, kind TEXT NOT NULL, parent_id TEXT, chain_id TEXT NOT NULL,
    status TEXT NOT NULL, size BIGINT NOT NULL, compression TEXT NOT NULL,
    changed_blocks BIGINT NOT NULL DEFAULT 0, allocated_blocks BIGINT NOT NULL DEFAULT 0,
    stored_bytes BIGINT NOT NULL DEFAULT 0, content_hash TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, completed_at TEXT NOT NULL DEFAULT '',
    project TEXT NOT NULL DEFAULT 'admin');
CREATE INDEX backups_volume ON backups(volume_id);
CREATE INDEX backups_parent ON backups(parent_id);
CREATE INDEX backups_project ON backups(project);
CREATE TABLE audit (
    seq BIGSERIAL PRIMARY KEY, at TEXT NOT NULL, event TEXT NOT NULL,
    project TEXT NOT NULL DEFAULT 'admin');
CREATE INDEX audit_project ON audit(project);
CREATE TABLE delta_sources (
    volume_id TEXT PRIMARY KEY, first_backup_id TEXT NOT NULL, second_backup_id TEXT NOT NULL,
    change_block_size BIGINT NOT NULL, changed_bytes BIGINT NOT NULL);
CREATE INDEX delta_sources_first ON delta_sources(first_backup_id);
CREATE INDEX delta_sources_second ON delta_sources(second_backup_id);
CREATE TABLE attachments (
    volume_id TEXT PRIMARY KEY, target_name TEXT NOT NULL UNIQUE, initiator TEXT NOT NULL,
    chap_user TEXT NOT NULL, chap_secret TEXT NOT NULL, block_size BIGINT NOT NULL,
    read_only BIGINT NOT NULL, attached_at TEXT NOT NULL);
CREATE TABLE projects (
    name TEXT PRIMARY KEY, delta_enabled BIGINT, created_at TEXT NOT NULL);
INSERT INTO projects (name, delta_enabled, created_at)
    VALUES ('admin', NULL, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'));
CREATE TABLE tokens (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL DEFAULT '', revoked_at TEXT NOT NULL DEFAULT '');
CREATE TABLE quotas (
    project TEXT NOT NULL, resource TEXT NOT NULL, hard_limit BIGINT NOT NULL,
    PRIMARY KEY (project, resource));
CREATE TABLE settings (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
";

const PG_MIGRATIONS: &[&str] = &[PG_V1, V2, V3, V4, V5];

/// Runs, inside the writers' transaction (one node at a time), every PostgreSQL migration
/// the database has not had; all or none, since PostgreSQL's DDL is transactional.
pub fn migrate_postgres(s: &mut dyn Session) -> Result<(), CatalogError> {
    s.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let done: Option<i64> = s
        .query_opt("SELECT MAX(version) FROM schema_version", &[])?
        .map(|r| r.get::<Option<i64>>(0))
        .transpose()?
        .flatten();
    let done = done.unwrap_or(0) as usize;
    if done > PG_MIGRATIONS.len() {
        return Err(newer(done, PG_MIGRATIONS.len()));
    }
    for (i, sql) in PG_MIGRATIONS.iter().enumerate().skip(done) {
        s.batch(sql)?;
        s.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            &[&((i + 1) as i64)],
        )?;
    }
    Ok(())
}

fn newer(done: usize, known: usize) -> CatalogError {
    CatalogError::Corrupt(format!(
        "catalog schema version {done} is newer than this server's {known}: upgrade the server"
    ))
}

/// Runs every migration the database has not had, each in its own transaction with its
/// version bump, so a crash leaves it at one version or the next.
pub fn migrate_sqlite(conn: &mut Connection) -> Result<(), CatalogError> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if done as usize > MIGRATIONS.len() {
        return Err(newer(done as usize, MIGRATIONS.len()));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A catalog made by the first release (no user_version) upgrades: its rows go to
    /// `admin`, and names may now repeat across projects.
    #[test]
    fn first_release_catalog_upgrades() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(V0).unwrap();
            conn.execute(
                "INSERT INTO volumes VALUES ('vol-1', 'data', 'managed', '/x', 4096, 'available', '', 't')",
                [],
            )
            .unwrap();
        }
        let mut conn = Connection::open(&path).unwrap();
        migrate_sqlite(&mut conn).unwrap();
        migrate_sqlite(&mut conn).unwrap();
        let project: String = conn
            .query_row("SELECT project FROM volumes WHERE id = 'vol-1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(project, "admin");
        conn.execute(
            "INSERT INTO volumes (id, project, name, kind, path, size, status, created_at)
             VALUES ('vol-2', 'b', 'data', 'managed', '/y', 4096, 'available', 't')",
            [],
        )
        .unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
    }
}
