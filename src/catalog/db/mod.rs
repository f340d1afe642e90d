//! The one seam between the catalog's rules and a database: a [`Session`] runs a statement
//! with typed parameters and returns rows of typed values. SQLite (embedded, one process)
//! and PostgreSQL (several nodes) implement it; every rule above is written once, in SQL
//! both accept, and is one transaction or one conditional statement (DESIGN.md §11).
//!
//! Statements number their parameters `?1, ?2, …` (SQLite's form); the PostgreSQL session
//! rewrites them to `$1, $2, …`. Integers are 64-bit everywhere (`BIGINT`), flags are
//! integers 0/1, and sums are cast to `BIGINT` (PostgreSQL's `SUM` of a `BIGINT` is
//! `NUMERIC`).

pub mod postgres;
pub mod sqlite;

use super::CatalogError;
use crate::kinds::{BackupKind, JobKind, QuotaResource, Role, RunOutcome, Status, VolumeKind};

/// The type of a parameter, so a `NULL` is typed too (PostgreSQL needs to know).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlType {
    Int,
    Text,
    Blob,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null(SqlType),
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// A Rust value a statement can take as a parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

/// A Rust value a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

/// The column type of a Rust type (for the `NULL` of an `Option`).
pub trait Typed {
    const TYPE: SqlType;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue + Typed> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null(T::TYPE),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null(_) => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

macro_rules! integer {
    ($($t:ty),+) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(*self as i64)
            }
        }
        impl Typed for $t {
            const TYPE: SqlType = SqlType::Int;
        }
        impl FromValue for $t {
            fn from_value(v: &Value) -> Option<Self> {
                match v {
                    Value::Int(i) => Some(*i as $t),
                    _ => None,
                }
            }
        }
    )+};
}
integer!(i64, u64, u32);

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl Typed for bool {
    const TYPE: SqlType = SqlType::Int;
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl Typed for &str {
    const TYPE: SqlType = SqlType::Text;
}
impl Typed for String {
    const TYPE: SqlType = SqlType::Text;
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}

/// The kinds and states meet their column text here and nowhere else.
macro_rules! text_column {
    ($($t:ty),+) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Text(self.as_str().to_string())
            }
        }
        impl FromValue for $t {
            fn from_value(v: &Value) -> Option<Self> {
                match v {
                    Value::Text(s) => <$t>::parse(s),
                    _ => None,
                }
            }
        }
    )+};
}
text_column!(
    BackupKind,
    Status,
    VolumeKind,
    Role,
    QuotaResource,
    JobKind,
    RunOutcome
);

/// One result row.
#[derive(Clone, Debug)]
pub struct Row(pub(super) Vec<Value>);

impl Row {
    /// Column `i` as a `T`; a column that does not read as one is a corrupt catalog.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, CatalogError> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| CatalogError::Corrupt(format!("row has no column {i}")))?;
        T::from_value(v).ok_or_else(|| {
            CatalogError::Corrupt(format!(
                "column {i} holds {v:?}, not a {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// Statements on one connection: alone (each its own transaction) or inside the
/// transaction [`super::Catalog::write`] opened.
pub trait Session {
    /// Runs a statement; returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, CatalogError>;

    fn query(&mut self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, CatalogError>;

    /// Runs several statements without parameters (migrations).
    fn batch(&mut self, sql: &str) -> Result<(), CatalogError>;

    /// The first row, if any.
    fn query_opt(
        &mut self,
        sql: &str,
        params: &[&dyn ToValue],
    ) -> Result<Option<Row>, CatalogError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row, which must exist.
    fn query_one(&mut self, sql: &str, params: &[&dyn ToValue]) -> Result<Row, CatalogError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| CatalogError::Corrupt(format!("no row from {sql:?}")))
    }
}
