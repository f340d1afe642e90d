//! `backup restore-cancel VOLUME` (cinder 3.4.3): stop the restore running onto a volume.
//!
//! The restore checks its job's cancel flag before each frame span it fetches, so it
//! stops within one span's work (at most 8 MiB); its job then records the volume `error`
//! "restore cancelled" and the backup `available`, and frees the volume. This call waits
//! for that (bounded), so what it answers is the volume's final state.

use std::time::{Duration, Instant};

use super::backups::RESTORE_CANCELLED;
use super::{EngineError, Refusal, Service, lock};
use crate::catalog::VolumeRecord;
use crate::identity::Caller;
use crate::kinds::{JobKind, Status};

/// How long the call waits for the stopped restore to record its state.
const STOP_WAIT: Duration = Duration::from_secs(10);

impl Service {
    /// Cancels the restore onto `volume` (id or name) and returns the volume once the
    /// restore has stopped.
    pub fn cancel_restore(
        &self,
        caller: &Caller,
        volume: &str,
    ) -> Result<VolumeRecord, EngineError> {
        let target = self.get_volume(caller, volume)?;
        let job = lock(&self.jobs).get(&target.id).cloned();
        let Some(job) = job.filter(|_| target.status == Status::Restoring) else {
            if let Some(held) = self.catalog.job_on(&target.id)?
                && held.kind == JobKind::Restore
                && held.node != self.node_name()
            {
                return Err(Refusal::RestoreOnOtherNode {
                    volume: target.id,
                    node: held.node,
                }
                .into());
            }
            return Err(Refusal::NoRestoreRunning {
                volume: target.id,
                status: target.status,
            }
            .into());
        };
        job.control.cancel();
        self.audit_action(
            caller,
            &target.project,
            "backup.restore_cancel",
            &target.id,
            serde_json::json!({}),
        );
        let until = Instant::now() + STOP_WAIT;
        while lock(&self.jobs).contains_key(&target.id) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let after = self.get_volume(caller, &target.id)?;
        if after.status == Status::Restoring {
            tracing::warn!(volume = %target.id, "a cancelled restore has not stopped yet");
        } else if after.error != RESTORE_CANCELLED {
            // It ended on its own (done or failed) before it saw the cancel.
            tracing::info!(volume = %target.id, status = %after.status, "the restore ended before its cancel");
        }
        Ok(after)
    }
}
