//! What a session needs from the target ([`Registry`]) and holds while it runs
//! ([`ExportLease`]); the target's export table implements one and hands out the other.

use crate::login::Directory;
use crate::lun::Lun;
use crate::scsi::UnitState;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What a session needs from the target: the export table.
pub trait Registry: Directory + Send + Sync {
    /// The LUN behind a target name, for the life of one session.
    fn export(&self, target_name: &str) -> Option<ExportLease>;
    /// Target names an initiator may see for `SendTargets=<value>` (RFC 7143 §12.3).
    fn send_targets(&self, initiator: &str, value: &str, current: Option<&str>) -> Vec<String>;
}

/// A session's hold on an export: the LUN and the state it shares with the export's other
/// sessions (reservations), a token cancelled when the export is removed, and a count of
/// sessions that drops when the lease does.
pub struct ExportLease {
    pub lun: Arc<dyn Lun>,
    pub state: Arc<UnitState>,
    pub closed: CancellationToken,
    pub active: Arc<std::sync::atomic::AtomicUsize>,
}

impl ExportLease {
    pub fn new(
        lun: Arc<dyn Lun>,
        state: Arc<UnitState>,
        closed: CancellationToken,
        active: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Self {
        active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self {
            lun,
            state,
            closed,
            active,
        }
    }
}

impl Drop for ExportLease {
    fn drop(&mut self) {
        self.active
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
