//! This server as a node of a cluster (DESIGN.md §11): it registers in the catalog,
//! heartbeats, renews the leases of the jobs it runs, and fails the jobs of nodes whose
//! leases ran out, as cinder's backup service does for a dead host. With the embedded
//! catalog the cluster is this one node, and the same code keeps its records honest.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Service;
use crate::catalog::{CatalogLocation, Claim, JobRecord, NodeRecord};
use crate::clock::{format_unix_millis, now_rfc3339};
use crate::engine::{EngineError, Refusal};
use crate::kinds::{JobKind, NodeState};
use crate::sync::lock;

/// The default `lease_seconds`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How this server takes part in a cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub catalog: CatalogLocation,
    /// `--node-name`: unique among the nodes sharing the catalog.
    pub node_name: String,
    /// How long a node's jobs outlive its last heartbeat (`lease_seconds`).
    pub lease: Duration,
    /// How far apart the nodes' and the store's clocks may be: gc spares packs this much
    /// older than the oldest running backup (`gc_clock_skew_seconds`).
    pub clock_skew: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            catalog: CatalogLocation::Sqlite,
            node_name: default_node_name(),
            lease: DEFAULT_LEASE,
            clock_skew: crate::repo::CLOCK_SKEW,
        }
    }
}

/// The host's name, the node name when none is given.
pub fn default_node_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = if ok {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "blockdelta".into()
    } else {
        name
    }
}

/// Node names: what a host name may hold.
pub fn check_node_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "node name {name:?}: 1 to 63 letters, digits, '.', '_' or '-'"
        ))
    }
}

pub fn now_ms() -> i64 {
    crate::clock::now_unix_millis()
}

/// A node as `service list` shows it.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub record: NodeRecord,
    pub state: NodeState,
    pub heartbeat_at: String,
}

impl Service {
    pub fn node_name(&self) -> &str {
        &self.cluster.node_name
    }

    /// Registers this node with the addresses clients reach it at, then heartbeats on a
    /// thread of its own until shutdown.
    pub fn join_cluster(self: &Arc<Self>, grpc_address: &str, iscsi_address: &str) {
        let record = NodeRecord {
            name: self.cluster.node_name.clone(),
            grpc_address: grpc_address.to_string(),
            iscsi_address: iscsi_address.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: now_rfc3339(),
            heartbeat_ms: now_ms(),
        };
        if let Err(e) = self.catalog.register_node(&record) {
            tracing::error!(error = %e, "cannot register this node; the heartbeat retries");
        }
        let svc = Arc::downgrade(self);
        let period = heartbeat_period(self.cluster.lease);
        let handle = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                loop {
                    let Some(svc) = svc.upgrade() else { return };
                    if svc.stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    // A failure (a panic included) costs one beat, never the heartbeat.
                    let beat = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        svc.beat(&record)
                    }));
                    if beat.is_err() {
                        tracing::error!("a heartbeat panicked; the next one runs as usual");
                    }
                    drop(svc);
                    std::thread::sleep(period);
                }
            });
        match handle {
            Ok(h) => *lock(&self.heartbeat) = Some(h),
            Err(e) => tracing::error!(error = %e, "cannot start the heartbeat"),
        }
    }

    /// One heartbeat: renew, tidy this node's job rows, fail other nodes' lost jobs.
    fn beat(&self, record: &NodeRecord) {
        let now = now_ms();
        let until = now + self.cluster.lease.as_millis() as i64;
        match self.catalog.heartbeat(&record.name, now, until) {
            Ok(true) => {}
            Ok(false) => {
                let again = NodeRecord {
                    heartbeat_ms: now,
                    ..record.clone()
                };
                if let Err(e) = self.catalog.register_node(&again) {
                    tracing::warn!(error = %e, "cannot register this node");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                return;
            }
        }
        self.release_stale_claims();
        self.fail_lost_jobs(now);
        self.pending.retry(&self.catalog);
    }

    /// Job rows of this node that no job of it runs (their release failed): released now.
    fn release_stale_claims(&self) {
        let Ok(rows) = self.catalog.list_jobs(Some(&self.cluster.node_name)) else {
            return;
        };
        let running = lock(&self.busy);
        for row in rows.iter().filter(|r| !running.contains_key(&r.volume_id)) {
            if let Err(e) = self
                .catalog
                .release_job(&row.volume_id, &self.cluster.node_name)
            {
                tracing::warn!(volume = %row.volume_id, error = %e, "cannot release a finished job");
            }
        }
    }

    fn fail_lost_jobs(&self, now: i64) {
        match self.catalog.fail_lost_jobs(now) {
            Ok(lost) => {
                for l in lost {
                    tracing::warn!(node = %l.job.node, job = %l.job.describe(), "node lost: its job failed");
                    if l.backup_failed {
                        self.forget_failed_backup(&l.job.subject);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot check for lost jobs"),
        }
    }

    /// A backup failed elsewhere: an index its node wrote just before dying must not bring
    /// it back; its packs are left to gc.
    pub(super) fn forget_failed_backup(&self, id: &str) {
        if let Err(e) = self.repo.remove_backup(id) {
            tracing::warn!(backup = %id, error = %e, "cannot remove a lost backup's index");
        }
        self.reader.forget(id);
    }

    /// A node as of now: down when its last heartbeat is older than a lease.
    fn view(&self, record: NodeRecord, now: i64) -> NodeView {
        let lease = self.cluster.lease.as_millis() as i64;
        NodeView {
            state: node_state(&record, now, lease),
            heartbeat_at: format_unix_millis(record.heartbeat_ms),
            record,
        }
    }

    /// Every node, with its state as of now.
    pub fn list_nodes(&self) -> Result<Vec<NodeView>, EngineError> {
        let now = now_ms();
        Ok(self
            .catalog
            .list_nodes()?
            .into_iter()
            .map(|record| self.view(record, now))
            .collect())
    }

    /// The node named, with its state as of now (one catalog read).
    pub fn node(&self, name: &str) -> Result<Option<NodeView>, EngineError> {
        Ok(self
            .catalog
            .get_node(name)?
            .map(|record| self.view(record, now_ms())))
    }

    /// How many jobs each node holds now.
    pub fn jobs_by_node(&self) -> Result<std::collections::HashMap<String, u32>, EngineError> {
        let mut counts = std::collections::HashMap::new();
        for j in self.catalog.list_jobs(None)? {
            *counts.entry(j.node).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Claims a volume for one job, across every node; refuses when another runs on it.
    pub(super) fn claim_volume(
        &self,
        volume_id: &str,
        kind: JobKind,
        subject: &str,
    ) -> Result<(), EngineError> {
        // Shutdown has begun: no new job (a policy run racing it, say).
        if self.is_stopping() {
            return Err(EngineError::Interrupted);
        }
        let job = JobRecord {
            volume_id: volume_id.to_string(),
            kind,
            subject: subject.to_string(),
            node: self.cluster.node_name.clone(),
            lease_until_ms: now_ms() + self.cluster.lease.as_millis() as i64,
            started_at: now_rfc3339(),
        };
        // Local first, so the heartbeat never takes the row for a stale one.
        {
            let mut busy = lock(&self.busy);
            if let Some(running) = busy.get(volume_id) {
                return Err(Refusal::VolumeJobRunning {
                    volume: volume_id.to_string(),
                    running: running.clone(),
                }
                .into());
            }
            busy.insert(volume_id.to_string(), job.describe());
        }
        let claimed = self.catalog.claim_job(&job);
        match claimed {
            Ok(Claim::Claimed) => Ok(()),
            Ok(Claim::Busy(holder)) => {
                lock(&self.busy).remove(volume_id);
                Err(Refusal::VolumeJobRunning {
                    volume: volume_id.to_string(),
                    running: holder.describe(),
                }
                .into())
            }
            Err(e) => {
                lock(&self.busy).remove(volume_id);
                Err(e.into())
            }
        }
    }

    pub(super) fn release_volume(&self, volume_id: &str) {
        lock(&self.busy).remove(volume_id);
        if let Err(e) = self.catalog.release_job(volume_id, &self.cluster.node_name) {
            // The next heartbeat releases it.
            tracing::warn!(volume = %volume_id, error = %e, "cannot release the volume's job yet");
        }
    }

    /// Whether this node still holds the job on `volume_id` (it may have lost its lease).
    pub(super) fn still_holds(&self, volume_id: &str, subject: &str) -> bool {
        self.catalog
            .holds_job(volume_id, subject, &self.cluster.node_name)
            .unwrap_or(true)
    }
}

fn heartbeat_period(lease: Duration) -> Duration {
    (lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(10))
}

fn node_state(n: &NodeRecord, now: i64, lease_ms: i64) -> NodeState {
    if now - n.heartbeat_ms <= lease_ms {
        NodeState::Up
    } else {
        NodeState::Down
    }
}
