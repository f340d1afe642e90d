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
    /// The `host[:port]` SendTargets hands out as every target's `TargetAddress` (the port
    /// we listen on when it names none): the address initiators can reach when it is not
    /// the one we listen on (NAT, a container, a wildcard listen address). `None`: the
    /// address the initiator's connection came in on.
    pub advertise: Option<String>,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            portal: SocketAddr::from(([127, 0, 0, 1], 3260)),
            discovery_auth: None,
            advertise: None,
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
    advertise: Option<String>,
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

/// Completes an advertised address, `host[:port]` (IPv6 in brackets), with `port` when it
/// names none. Errors say what is wrong with it, for the operator's config.
pub fn advertised_address(advertise: &str, port: u16) -> Result<String, String> {
    let bad = |why: &str| Err(format!("advertised iSCSI address {advertise:?}: {why}"));
    if advertise.is_empty() || advertise.contains(|c: char| c.is_whitespace() || c == ',') {
        return bad("expected HOST:PORT or HOST, without spaces or commas");
    }
    let (host, explicit) = if let Some(rest) = advertise.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return bad("an IPv6 address needs its closing ']'");
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("not an IPv6 address between the brackets");
        }
        match after {
            "" => (&advertise[..v6.len() + 2], None),
            p => match p.strip_prefix(':') {
                Some(p) => (&advertise[..v6.len() + 2], Some(p)),
                None => return bad("expected :PORT after ']'"),
            },
        }
    } else {
        match advertise.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return bad("write an IPv6 address in brackets: [ADDRESS]:PORT");
            }
            Some((h, p)) => (h, Some(p)),
            None => (advertise, None),
        }
    };
    if host.is_empty() {
        return bad("the host is missing");
    }
    let port = match explicit {
        None => port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return bad("the port must be a number from 1 to 65535"),
        },
    };
    Ok(format!("{host}:{port}"))
}

/// `host:port` as a `TargetAddress` writes it (RFC 7143 §13.8: IPv6 in brackets).
pub fn portal_address(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

impl Target {
    /// Binds the portal and starts accepting connections.
    pub async fn start(config: TargetConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.portal).await?;
        let local_addr = listener.local_addr()?;
        let advertise = config
            .advertise
            .as_deref()
            .map(|a| advertised_address(a, local_addr.port()))
            .transpose()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let shared = Arc::new(Shared {
            exports: RwLock::new(HashMap::new()),
            discovery_auth: config.discovery_auth,
            advertise,
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

    /// The `host:port` initiators are told to connect to: the advertised address, or else
    /// the one we listen on.
    pub fn advertised_portal(&self) -> String {
        self.shared
            .advertise
            .clone()
            .unwrap_or_else(|| portal_address(self.local_addr))
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
        let portal = match &shared.advertise {
            Some(address) => address.clone(),
            None => portal_address(
                stream
                    .local_addr()
                    .unwrap_or_else(|_| listener.local_addr().unwrap_or(peer)),
            ),
        };
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
    fn advertised_addresses() {
        assert_eq!(
            advertised_address("10.0.2.2", 3260).unwrap(),
            "10.0.2.2:3260"
        );
        assert_eq!(
            advertised_address("10.0.2.2:9", 3260).unwrap(),
            "10.0.2.2:9"
        );
        assert_eq!(
            advertised_address("host.example", 1).unwrap(),
            "host.example:1"
        );
        assert_eq!(
            advertised_address("[fd00::1]", 3260).unwrap(),
            "[fd00::1]:3260"
        );
        assert_eq!(
            advertised_address("[fd00::1]:7", 3260).unwrap(),
            "[fd00::1]:7"
        );
        for bad in [
            "", "fd00::1", "h:0", "h:x", ":3260", "[fd00::1", "[zz]:1", "a b", "h:1,1",
        ] {
            assert!(advertised_address(bad, 3260).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("iqn.2026-11.io.blockdelta:vol-1"));
        assert!(!valid_name("IQN.2026-11.io.blockdelta"));
        assert!(!valid_name("disk1"));
    }
}
