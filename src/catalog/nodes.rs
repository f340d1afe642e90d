//! The nodes of a cluster: each registers at start and heartbeats; a node whose last
//! heartbeat is older than a lease is down (`service list`).

use super::db::Row;
use super::{Catalog, CatalogError};
use crate::faults::fault;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub name: String,
    /// Where its gRPC API answers and its iSCSI target listens (as clients reach them).
    pub grpc_address: String,
    pub iscsi_address: String,
    pub version: String,
    pub started_at: String,
    /// Milliseconds since the epoch.
    pub heartbeat_ms: i64,
}

const COLUMNS: &str = "name, grpc_address, iscsi_address, version, started_at, heartbeat_ms";

fn from_row(r: &Row) -> Result<NodeRecord, CatalogError> {
    Ok(NodeRecord {
        name: r.get(0)?,
        grpc_address: r.get(1)?,
        iscsi_address: r.get(2)?,
        version: r.get(3)?,
        started_at: r.get(4)?,
        heartbeat_ms: r.get(5)?,
    })
}

impl Catalog {
    /// Registers a node (again, after a restart: its row is replaced).
    pub fn register_node(&self, n: &NodeRecord) -> Result<(), CatalogError> {
        fault!("catalog.register_node", CatalogError::disk_full);
        self.read(|s| {
            s.execute(
                &format!(
                    "INSERT INTO nodes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (name) DO UPDATE SET grpc_address = excluded.grpc_address,
                     iscsi_address = excluded.iscsi_address, version = excluded.version,
                     started_at = excluded.started_at, heartbeat_ms = excluded.heartbeat_ms"
                ),
                &[
                    &n.name,
                    &n.grpc_address,
                    &n.iscsi_address,
                    &n.version,
                    &n.started_at,
                    &n.heartbeat_ms,
                ],
            )
        })?;
        Ok(())
    }

    /// One heartbeat: the node is alive at `now_ms`, and its jobs' leases run to
    /// `lease_until_ms`. `Ok(false)`: the node has no row (removed), so it registers again.
    pub fn heartbeat(
        &self,
        node: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, CatalogError> {
        fault!("catalog.heartbeat", CatalogError::disk_full);
        self.read(|s| {
            let n = s.execute(
                "UPDATE nodes SET heartbeat_ms = ?2 WHERE name = ?1",
                &[&node, &now_ms],
            )?;
            s.execute(
                "UPDATE jobs SET lease_until_ms = ?2 WHERE node = ?1",
                &[&node, &lease_until_ms],
            )?;
            Ok(n == 1)
        })
    }

    pub fn list_nodes(&self) -> Result<Vec<NodeRecord>, CatalogError> {
        self.read(|s| s.query(&format!("SELECT {COLUMNS} FROM nodes ORDER BY name"), &[]))?
            .iter()
            .map(from_row)
            .collect()
    }

    pub fn get_node(&self, name: &str) -> Result<Option<NodeRecord>, CatalogError> {
        self.read(|s| {
            s.query_opt(
                &format!("SELECT {COLUMNS} FROM nodes WHERE name = ?1"),
                &[&name],
            )
        })?
        .map(|r| from_row(&r))
        .transpose()
    }
}
