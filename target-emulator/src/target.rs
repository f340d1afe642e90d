//! The target: a TCP listener on one portal and the table of exports (target name → LUN) that
//! sessions log in to. Exports can be added and removed while other sessions run; removing one
//! ends its sessions.

use crate::login::{Authentication, Directory, Lookup};
use crate::lun::Lun;
use crate::scsi::UnitState;
use crate::session::{self, ExportLease, Registry};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// Longest iSCSI name (RFC 7143 §4.2.7.1).
const MAX_NAME_LEN: usize = 223;

#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// Where to listen; port 0 picks a free one (see [`Target::local_addr`]).
    pub portal: SocketAddr,
    /// CHAP for discovery sessions; `None` lets anyone list the targets they may see.
    pub discovery_auth: Option<Authentication>,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            portal: SocketAddr::from(([127, 0, 0, 1], 3260)),
            discovery_auth: None,
        }
    }
}

/// One exported logical unit.
pub struct Export {
    pub lun: Arc<dyn Lun>,
    /// CHAP the initiator must pass to log in; `None` for no authentication.
    pub auth: Option<Authentication>,
    /// Initiator names allowed to log in and to see it in discovery; empty allows any.
    pub allowed_initiators: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("target name {0:?} is already exported")]
    AlreadyExported(String),
    #[error("{0:?} is not a valid iSCSI name (iqn., eui. or naa.; lower case; at most 223 bytes)")]
    InvalidName(String),
}

struct Entry {
    export: Export,
    /// Reservations and the media lock: one per logical unit, shared by its sessions.
    state: Arc<UnitState>,
    closed: CancellationToken,
    active: Arc<AtomicUsize>,
}

struct Shared {
    exports: RwLock<HashMap<String, Entry>>,
    discovery_auth: Option<Authentication>,
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.exports.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.exports.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn allowed(e: &Export, initiator: &str) -> bool {
    e.allowed_initiators.is_empty() || e.allowed_initiators.iter().any(|a| a == initiator)
}

impl Directory for Shared {
    fn lookup(&self, target_name: &str, initiator_name: &str) -> Lookup {
        match self.read().get(target_name) {
            None => Lookup::NotFound,
            Some(e) if !allowed(&e.export, initiator_name) => Lookup::Forbidden,
            Some(e) => Lookup::Found(e.export.auth.clone()),
        }
    }
    fn discovery_chap(&self) -> Option<Authentication> {
        self.discovery_auth.clone()
    }
}

impl Registry for Shared {
    fn export(&self, target_name: &str) -> Option<ExportLease> {
        self.read().get(target_name).map(|e| {
            ExportLease::new(
                e.export.lun.clone(),
                e.state.clone(),
                e.closed.clone(),
                e.active.clone(),
            )
        })
    }
    fn send_targets(&self, initiator: &str, value: &str, current: Option<&str>) -> Vec<String> {
        let map = self.read();
        let mut names: Vec<String> = match value {
            "All" => map
                .iter()
                .filter(|(_, e)| allowed(&e.export, initiator))
                .map(|(n, _)| n.clone())
                .collect(),
            "" => current.map(str::to_string).into_iter().collect(),
            name => map
                .get(name)
                .filter(|e| allowed(&e.export, initiator))
                .map(|_| name.to_string())
                .into_iter()
                .collect(),
        };
        names.sort();
        names
    }
}

/// A running iSCSI target.
pub struct Target {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    accept_loop: Option<tokio::task::JoinHandle<()>>,
}

/// Whether `name` is an iSCSI name we accept (RFC 7143 §4.2.7).
pub fn valid_name(name: &str) -> bool {
    let prefixed = ["iqn.", "eui.", "naa."].iter().any(|p| name.starts_with(p));
    prefixed
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".:-".contains(&b))
}

impl Target {
    /// Binds the portal and starts accepting connections.
    pub async fn start(config: TargetConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.portal).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            exports: RwLock::new(HashMap::new()),
            discovery_auth: config.discovery_auth,
        });
        let shutdown = CancellationToken::new();
        let accept_loop = tokio::spawn(accept(listener, shared.clone(), shutdown.clone()));
        info!(portal = %local_addr, "iSCSI target listening");
        Ok(Self {
            shared,
            local_addr,
            shutdown,
            accept_loop: Some(accept_loop),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn add_export(&self, target_name: &str, export: Export) -> Result<(), TargetError> {
        if !valid_name(target_name) {
            return Err(TargetError::InvalidName(target_name.to_string()));
        }
        let mut map = self.shared.write();
        if map.contains_key(target_name) {
            return Err(TargetError::AlreadyExported(target_name.to_string()));
        }
        map.insert(
            target_name.to_string(),
            Entry {
                export,
                state: Arc::new(UnitState::new()),
                closed: CancellationToken::new(),
                active: Arc::new(AtomicUsize::new(0)),
            },
        );
        info!(target = target_name, "export added");
        Ok(())
    }

    /// Removes an export and ends its sessions; false if there was none.
    pub fn remove_export(&self, target_name: &str) -> bool {
        match self.shared.write().remove(target_name) {
            Some(e) => {
                e.closed.cancel();
                info!(target = target_name, "export removed");
                true
            }
            None => false,
        }
    }

    /// Sessions logged in to `target_name` now.
    pub fn active_sessions(&self, target_name: &str) -> usize {
        self.shared
            .read()
            .get(target_name)
            .map_or(0, |e| e.active.load(Ordering::SeqCst))
    }

    pub fn export_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// Stops accepting, ends every session, and waits for the listener to close.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.accept_loop.take() {
            let _ = h.await;
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let tsih = AtomicU16::new(1);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let portal = stream
            .local_addr()
            .unwrap_or_else(|_| listener.local_addr().unwrap_or(peer));
        // TSIH 0 is reserved (RFC 7143 §11.12.6).
        let mut id = tsih.fetch_add(1, Ordering::Relaxed);
        if id == 0 {
            id = tsih.fetch_add(1, Ordering::Relaxed);
        }
        let registry: Arc<dyn Registry> = shared.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let (r, w) = stream.into_split();
            session::serve(r, w, peer, portal, registry, id, stop).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("iqn.2026-11.io.blockdelta:vol-1"));
        assert!(!valid_name("IQN.2026-11.io.blockdelta"));
        assert!(!valid_name("disk1"));
    }
}
