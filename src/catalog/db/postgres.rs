//! The shared catalog of a cluster: PostgreSQL through `tokio-postgres`.
//!
//! The catalog's API blocks (as SQLite does), so the client runs on a small runtime of its
//! own and each statement is handed to it and waited for; a statement that does not
//! answer within [`STATEMENT_TIMEOUT`] fails instead of wedging the caller. Connections
//! are pooled and opened on demand; a broken one is dropped, not reused.
//!
//! Write transactions take one transaction-scoped advisory lock first, so they run one at
//! a time across every node, exactly as SQLite's single writer does: each rule (a quota
//! reservation, a volume's one job, a delete that must see no dependents) reads what the
//! previous writer committed. They are a few statements long, so this costs little.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls};

use super::{Row, Session, SqlType, ToValue, Value};
use crate::catalog::CatalogError;

const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The advisory lock every write transaction holds (any constant: only we use it).
const WRITER_LOCK: i64 = 0x626c_6b64_656c_7461;
/// Idle connections kept for reuse.
const POOL_IDLE: usize = 8;

pub struct PostgresDb {
    runtime: Option<tokio::runtime::Runtime>,
    config: tokio_postgres::Config,
    /// `host:port/dbname`, for messages (never the password).
    location: String,
    idle: Mutex<Vec<Arc<Client>>>,
}

impl PostgresDb {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/dbname`) and runs the
    /// migrations this database has not had.
    pub fn open(url: &str) -> Result<PostgresDb, CatalogError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            CatalogError::Unavailable(format!("catalog URL is not a PostgreSQL URL: {e}"))
        })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("blockdelta");
        let location = describe(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("catalog-pg")
            .enable_all()
            .build()
            .map_err(|e| CatalogError::Unavailable(format!("catalog runtime: {e}")))?;
        let db = PostgresDb {
            runtime: Some(runtime),
            config,
            location,
            idle: Mutex::new(Vec::new()),
        };
        db.write(crate::catalog::migrations::migrate_postgres)?;
        Ok(db)
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// Runs `fut` on the client's runtime and waits for it, at most `STATEMENT_TIMEOUT`.
    fn run<T: Send + 'static>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    ) -> Result<T, CatalogError> {
        let runtime = self.runtime.as_ref().expect("runtime lives until drop");
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let _ = tx.send(tokio::time::timeout(STATEMENT_TIMEOUT, fut).await);
        });
        match rx.recv() {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(self.error(e)),
            Ok(Err(_)) => Err(CatalogError::Unavailable(format!(
                "catalog {} did not answer {what} within {} s",
                self.location,
                STATEMENT_TIMEOUT.as_secs()
            ))),
            Err(_) => Err(CatalogError::Unavailable(format!(
                "catalog {} is shutting down",
                self.location
            ))),
        }
    }

    fn error(&self, e: tokio_postgres::Error) -> CatalogError {
        match e.as_db_error() {
            Some(db) => CatalogError::Postgres {
                code: db.code().code().to_string(),
                message: db.message().to_string(),
            },
            None => {
                let cause = std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                CatalogError::Unavailable(format!("catalog {}: {e}{cause}", self.location))
            }
        }
    }

    fn checkout(&self) -> Result<Arc<Client>, CatalogError> {
        while let Some(client) = crate::sync::lock(&self.idle).pop() {
            if !client.is_closed() {
                return Ok(client);
            }
        }
        let config = self.config.clone();
        let runtime = self.runtime.as_ref().expect("runtime lives until drop");
        let handle = runtime.handle().clone();
        let client = self.run("a connection", async move {
            let (client, connection) = config.connect(NoTls).await?;
            handle.spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "catalog connection ended");
                }
            });
            Ok(client)
        })?;
        Ok(Arc::new(client))
    }

    fn checkin(&self, client: Arc<Client>) {
        let mut idle = crate::sync::lock(&self.idle);
        if !client.is_closed() && idle.len() < POOL_IDLE {
            idle.push(client);
        }
    }

    pub fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Session) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let client = self.checkout()?;
        let out = f(&mut PgSession {
            db: self,
            client: client.clone(),
        });
        self.checkin(client);
        out
    }

    /// `f` in one transaction holding the writers' lock: committed when it returns `Ok`,
    /// rolled back otherwise (a broken connection rolls back by itself).
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn Session) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let client = self.checkout()?;
        let mut session = PgSession {
            db: self,
            client: client.clone(),
        };
        session.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK})"
        ))?;
        let out = f(&mut session);
        let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = session.batch(end);
        self.checkin(client);
        let out = out?;
        ended?;
        Ok(out)
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        // Dropped from async code too (a server's shutdown): never block there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db}")
}

struct PgSession<'d> {
    db: &'d PostgresDb,
    client: Arc<Client>,
}

#[derive(Debug)]
struct Param(Value);

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Value::Null(_) => Ok(IsNull::Yes),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn pg_type(v: &Value) -> Type {
    let t = match v {
        Value::Null(t) => *t,
        Value::Int(_) => SqlType::Int,
        Value::Text(_) => SqlType::Text,
        Value::Blob(_) => SqlType::Blob,
    };
    match t {
        SqlType::Int => Type::INT8,
        SqlType::Text => Type::TEXT,
        SqlType::Blob => Type::BYTEA,
    }
}

/// `?N` (SQLite's numbered parameters, what the catalog writes) as `$N`.
pub(crate) fn numbered_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

fn column(row: &tokio_postgres::Row, i: usize) -> Result<Value, tokio_postgres::Error> {
    let ty = row.columns()[i].type_().clone();
    Ok(match ty {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null(SqlType::Int), Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map_or(Value::Null(SqlType::Int), |v| Value::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map_or(Value::Null(SqlType::Int), |v| Value::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null(SqlType::Int), |v| Value::Int(v.into())),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Value::Null(SqlType::Blob), Value::Blob),
        _ => row
            .try_get::<_, Option<String>>(i)?
            .map_or(Value::Null(SqlType::Text), Value::Text),
    })
}

impl PgSession<'_> {
    fn run_statement(
        &mut self,
        sql: &str,
        params: &[&dyn ToValue],
    ) -> Result<(Vec<Row>, u64), CatalogError> {
        use futures::TryStreamExt;
        let sql = numbered_params(sql);
        let params: Vec<(Param, Type)> = params
            .iter()
            .map(|p| {
                let v = p.to_value();
                let t = pg_type(&v);
                (Param(v), t)
            })
            .collect();
        let client = self.client.clone();
        let started = std::time::Instant::now();
        let logged = sql.clone();
        let out = self.db.run("a statement", async move {
            let stream = client
                .query_typed_raw(&sql, params.iter().map(|(p, t)| (p, t.clone())))
                .await?;
            futures::pin_mut!(stream);
            let mut rows = Vec::new();
            while let Some(r) = stream.try_next().await? {
                let values = (0..r.len())
                    .map(|i| column(&r, i))
                    .collect::<Result<Vec<_>, _>>()?;
                rows.push(Row(values));
            }
            let changed = stream.rows_affected().unwrap_or(0);
            Ok((rows, changed))
        });
        slow(started, &logged);
        out
    }
}

impl Session for PgSession<'_> {
    fn execute(&mut self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, CatalogError> {
        Ok(self.run_statement(sql, params)?.1)
    }

    fn query(&mut self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, CatalogError> {
        Ok(self.run_statement(sql, params)?.0)
    }

    fn batch(&mut self, sql: &str) -> Result<(), CatalogError> {
        let client = self.client.clone();
        let owned = sql.to_string();
        let started = std::time::Instant::now();
        let out = self
            .db
            .run("a batch", async move { client.batch_execute(&owned).await });
        slow(started, sql);
        out
    }
}

/// A statement that took long says so: the operator sees a slow or busy database (or a
/// writer holding the lock) in the log, with the statement's start.
fn slow(started: std::time::Instant, sql: &str) {
    let spent = started.elapsed();
    if spent > Duration::from_millis(200) {
        let head: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let head: String = head.chars().take(80).collect();
        tracing::warn!(ms = spent.as_millis() as u64, statement = %head, "slow catalog statement");
    }
}

#[cfg(test)]
mod tests {
    use super::numbered_params;

    #[test]
    fn numbered_params_become_dollars_outside_quotes() {
        assert_eq!(
            numbered_params("SELECT '?' WHERE a = ?1 AND b = ?12"),
            "SELECT '?' WHERE a = $1 AND b = $12"
        );
    }
}
