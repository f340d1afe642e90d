//! Attachments: volumes exported on the server's built-in iSCSI target, each as
//! its own target name with one LUN, LUN 0. A managed or registered volume is
//! exported as its file (`FileLun`); a delta volume as a `DeltaVolume` over the
//! repository. The catalog remembers attachments, so a restarted server exports
//! them again under the same names and credentials.
//!
//! This layer sits beside the API: `api → export → engine, delta, target-emulator`.
//! It owns the order of side effects: the export exists before the catalog says
//! `in-use`, and the catalog forgets an attachment only after its export is gone.

pub mod error;

use crate::identity::Caller;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;
use target_emulator::{
    Authentication, ChapCredentials, Export, FileLun, Lun, Target, TargetConfig, target,
};

pub use error::ExportError;

use crate::clock::now_rfc3339;
use crate::delta::Deltas;
use crate::engine::Service;
use crate::engine::{AttachmentRecord, Status, VolumeRecord};
use crate::kinds::{NodeState, VolumeKind};

/// How attachments are made.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// Where the iSCSI target listens (port 0: any free port).
    pub listen: SocketAddr,
    /// `HOST[:PORT]` hosts are told to connect to (SendTargets, AttachVolume's answer).
    pub advertise: Option<String>,
    /// (user, secret) a discovery session must log in with.
    pub discovery_chap: Option<(String, String)>,
    /// Target names are `<prefix>:<volume id>`.
    pub iqn_prefix: String,
    /// Every attachment requires CHAP, whatever the request says.
    pub require_chap: bool,
}

/// Whether an attachment's node serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachmentState {
    Attached,
    /// Its node is down: attach it again on another node.
    Lost,
}

impl AttachmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentState::Attached => "attached",
            AttachmentState::Lost => "lost",
        }
    }
}

/// What an attach request asks for.
#[derive(Clone, Debug, Default)]
pub struct AttachRequest {
    /// The node to serve it (`--node`); empty: this one.
    pub node: String,
    pub initiator: String,
    pub chap: bool,
    /// 0 = 512.
    pub block_size: u32,
    pub read_only: bool,
}

pub struct Exports {
    svc: Arc<Service>,
    target: Target,
    config: ExportConfig,
    deltas: Arc<Deltas>,
    /// Attach, detach and delete run one at a time: a volume is never exported
    /// twice, nor deleted while being attached.
    serial: Mutex<()>,
}

impl Exports {
    /// Starts the iSCSI target and exports every volume the catalog says is
    /// attached. An attachment that cannot be restored (its file is gone, say) is
    /// dropped and its volume marked `error` with the reason.
    pub async fn start(
        svc: Arc<Service>,
        deltas: Arc<Deltas>,
        config: ExportConfig,
    ) -> std::io::Result<Arc<Exports>> {
        let target = Target::start(TargetConfig {
            portal: config.listen,
            discovery_auth: config
                .discovery_chap
                .clone()
                .map(|(user, secret)| Authentication {
                    initiator: ChapCredentials { user, secret },
                    target: None,
                }),
            advertise: config.advertise.clone(),
        })
        .await?;
        let exports = Arc::new(Exports {
            deltas,
            svc,
            target,
            config,
            serial: Mutex::new(()),
        });
        let restoring = exports.clone();
        tokio::task::spawn_blocking(move || restoring.restore_attachments())
            .await
            .map_err(std::io::Error::other)?;
        Ok(exports)
    }

    /// The portal initiators are told to connect to (`host:port`): the advertised one, or
    /// the listen address.
    pub fn portal(&self) -> String {
        self.target.advertised_portal()
    }

    /// The address the target listens on.
    pub fn listen_address(&self) -> SocketAddr {
        self.target.local_addr()
    }

    fn serial(&self) -> MutexGuard<'_, ()> {
        crate::sync::lock(&self.serial)
    }

    fn restore_attachments(&self) {
        let attachments = match self.svc.own_attachments() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot list attachments to restore");
                return;
            }
        };
        for a in attachments {
            let restored = self
                .svc
                .get_volume(&Caller::system(), &a.volume_id)
                .map_err(ExportError::from)
                .and_then(|v| self.export(&v, &a));
            match restored {
                Ok(()) => {
                    tracing::info!(volume = %a.volume_id, target = %a.target_name, "attachment restored")
                }
                Err(e) => {
                    tracing::warn!(volume = %a.volume_id, error = %e, "attachment dropped");
                    let recorded = self.svc.drop_attachment(
                        &a.volume_id,
                        &format!("attachment could not be restored: {e}"),
                    );
                    match recorded {
                        Ok(()) => self.sync_manifest(&a.volume_id),
                        // The next start tries again: the catalog still has the attachment.
                        Err(c) => tracing::error!(volume = %a.volume_id, error = %c,
                            "cannot record the dropped attachment"),
                    }
                }
            }
        }
    }

    /// The attachment of a volume (id or name), if any, with its live session count (known
    /// on the node that serves it; 0 elsewhere).
    pub fn attachment(
        &self,
        volume_id: &str,
    ) -> Result<Option<(AttachmentRecord, u32)>, ExportError> {
        Ok(self.svc.attachment(volume_id)?.map(|a| {
            let sessions = if self.is_mine(&a) {
                self.target.active_sessions(&a.target_name) as u32
            } else {
                0
            };
            (a, sessions)
        }))
    }

    fn is_mine(&self, a: &AttachmentRecord) -> bool {
        a.node.is_empty() || a.node == self.svc.node_name()
    }

    /// Where and in which state an attachment is: the serving node's portal, and `lost`
    /// when that node is down (it can then be attached again on another node).
    pub fn placement(&self, a: &AttachmentRecord) -> (String, AttachmentState) {
        if self.is_mine(a) {
            return (self.portal(), AttachmentState::Attached);
        }
        match self.svc.node(&a.node) {
            Ok(Some(n)) => {
                let state = if n.state == NodeState::Up {
                    AttachmentState::Attached
                } else {
                    AttachmentState::Lost
                };
                (n.record.iscsi_address, state)
            }
            _ => (String::new(), AttachmentState::Lost),
        }
    }

    /// Refuses a call about an attachment another live node serves, naming that node.
    fn served_here(&self, a: &AttachmentRecord) -> Result<bool, ExportError> {
        if self.is_mine(a) {
            return Ok(true);
        }
        match self.svc.node(&a.node)? {
            Some(n) if n.state == NodeState::Up => Err(ExportError::OnOtherNode {
                volume: a.volume_id.clone(),
                node: a.node.clone(),
                address: n.record.grpc_address,
            }),
            _ => Ok(false),
        }
    }

    /// Exports a volume. Delta volumes are always read-only; CHAP credentials are
    /// generated when asked for or required by the configuration.
    pub fn attach(
        &self,
        caller: &Caller,
        volume: &str,
        req: &AttachRequest,
    ) -> Result<(AttachmentRecord, VolumeRecord), ExportError> {
        let _one = self.serial();
        let mut volume = self.svc.get_volume(caller, volume)?;
        if !req.node.is_empty() && req.node != self.svc.node_name() {
            let node = self
                .svc
                .node(&req.node)?
                .ok_or_else(|| ExportError::UnknownNode(req.node.clone()))?;
            return Err(ExportError::OnOtherNode {
                volume: volume.id,
                node: node.record.name,
                address: node.record.grpc_address,
            });
        }
        let lost = match self.svc.attachment(&volume.id)? {
            // Its node is down: attached again here, replacing it.
            Some(a) if !self.served_here(&a).unwrap_or(true) => Some(a),
            Some(a) => {
                return Err(ExportError::AlreadyAttached {
                    volume: volume.id,
                    target: a.target_name,
                });
            }
            None => None,
        };
        let attachable = volume.status == Status::Available
            || (lost.is_some() && volume.status == Status::InUse);
        if !attachable {
            return Err(ExportError::NotAttachable {
                volume: volume.id,
                status: volume.status,
            });
        }
        let block_size = match req.block_size {
            0 => 512,
            512 | 4096 => req.block_size,
            other => return Err(ExportError::BlockSize(other)),
        };
        if !req.initiator.is_empty() && !target::valid_name(&req.initiator) {
            return Err(ExportError::InvalidInitiator(req.initiator.clone()));
        }
        let (chap_user, chap_secret) = if req.chap || self.config.require_chap {
            let user = format!("bd-{:08x}", rand::random::<u32>());
            (user, random_secret())
        } else {
            (String::new(), String::new())
        };
        let record = AttachmentRecord {
            volume_id: volume.id.clone(),
            target_name: format!("{}:{}", self.config.iqn_prefix, volume.id),
            initiator: req.initiator.clone(),
            chap_user,
            chap_secret,
            block_size,
            read_only: req.read_only || volume.kind == VolumeKind::Delta,
            attached_at: now_rfc3339(),
            node: self.svc.node_name().to_string(),
        };
        self.export(&volume, &record)?;
        if let Err(e) = self.svc.record_attachment(&record, lost.as_ref()) {
            self.target.remove_export(&record.target_name);
            return Err(e.into());
        }
        self.sync_manifest(&volume.id);
        self.svc.audit_action(
            caller,
            &volume.project,
            "volume.attach",
            &volume.id,
            serde_json::json!({"target": record.target_name, "initiator": record.initiator,
                "chap": !record.chap_user.is_empty(), "blockSize": block_size, "readOnly": record.read_only}),
        );
        volume.status = Status::InUse;
        Ok((record, volume))
    }

    /// Removes a volume's export. With sessions logged in, refused unless
    /// `force`, which ends them. Returns the volume and the sessions ended.
    pub fn detach(
        &self,
        caller: &Caller,
        volume: &str,
        force: bool,
    ) -> Result<(VolumeRecord, u32), ExportError> {
        let _one = self.serial();
        self.detach_locked(caller, volume, force)
    }

    fn detach_locked(
        &self,
        caller: &Caller,
        volume: &str,
        force: bool,
    ) -> Result<(VolumeRecord, u32), ExportError> {
        let mut volume = self.svc.get_volume(caller, volume)?;
        let Some(a) = self.svc.attachment(&volume.id)? else {
            return Err(ExportError::NotAttached(volume.id));
        };
        // A lost node's attachment has no export left to remove: only its record goes.
        let here = self.served_here(&a)?;
        let sessions = if here {
            self.target.active_sessions(&a.target_name) as u32
        } else {
            0
        };
        if sessions > 0 && !force {
            return Err(ExportError::SessionsActive {
                volume: volume.id,
                target: a.target_name,
                sessions,
            });
        }
        if here {
            self.target.remove_export(&a.target_name);
            // No write can come any more: the tracking file is closed clean. A failure
            // (or panic) leaves it in use, which costs the next incremental a full compare
            // and must not stop the detach.
            if let Some(tracker) = self.svc.write_tracker(&volume) {
                let closed =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tracker.persist()));
                if !matches!(closed, Ok(Ok(()))) {
                    tracing::warn!(volume = %volume.id, "cannot close write tracking (the next incremental compares every block)");
                }
            }
        }
        self.svc.forget_attachment(&volume.id)?;
        self.sync_manifest(&volume.id);
        self.svc.audit_action(
            caller,
            &volume.project,
            "volume.detach",
            &volume.id,
            serde_json::json!({"target": a.target_name, "sessionsEnded": sessions}),
        );
        if volume.status == Status::InUse {
            volume.status = Status::Available;
        }
        Ok((volume, sessions))
    }

    /// Deletes a volume; an attached one only with `force`, which detaches it
    /// first (ending its sessions).
    pub fn delete_volume(
        &self,
        caller: &Caller,
        volume: &str,
        force: bool,
    ) -> Result<VolumeRecord, ExportError> {
        let _one = self.serial();
        let record = self.svc.get_volume(caller, volume)?;
        if let Some(a) = self.svc.attachment(&record.id)? {
            if !force {
                return Err(ExportError::Attached {
                    volume: record.id,
                    target: a.target_name,
                });
            }
            self.detach_locked(caller, &record.id, true)?;
        }
        Ok(self.svc.delete_volume(caller, &record.id)?)
    }

    /// The repository's copy of the attachment follows the catalog's (recover reads it);
    /// failing to write it costs recover this attachment, not the attach: logged.
    fn sync_manifest(&self, volume_id: &str) {
        if let Err(e) = self.svc.sync_volume_manifest(volume_id) {
            tracing::warn!(volume = %volume_id, error = %e, "cannot write the volume manifest");
        }
    }

    /// Exports every attachment the catalog has that the target does not serve yet (after
    /// `recover` brought attachments back).
    pub fn export_recovered(&self) {
        let _one = self.serial();
        let exported = self.target.export_names();
        match self.svc.own_attachments() {
            Ok(all) => {
                for a in all
                    .into_iter()
                    .filter(|a| !exported.contains(&a.target_name))
                {
                    let done = self
                        .svc
                        .get_volume(&Caller::system(), &a.volume_id)
                        .map_err(ExportError::from)
                        .and_then(|v| self.export(&v, &a));
                    if let Err(e) = done {
                        tracing::warn!(volume = %a.volume_id, error = %e, "recovered attachment not exported");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list attachments to export"),
        }
    }

    /// Adds the export for an attachment record.
    fn export(&self, volume: &VolumeRecord, a: &AttachmentRecord) -> Result<(), ExportError> {
        let lun = self.lun_for(volume, a)?;
        let auth = (!a.chap_user.is_empty()).then(|| Authentication {
            initiator: ChapCredentials {
                user: a.chap_user.clone(),
                secret: a.chap_secret.clone(),
            },
            target: None,
        });
        let allowed_initiators = if a.initiator.is_empty() {
            Vec::new()
        } else {
            vec![a.initiator.clone()]
        };
        self.target.add_export(
            &a.target_name,
            Export {
                lun,
                auth,
                allowed_initiators,
            },
        )?;
        Ok(())
    }

    fn lun_for(
        &self,
        volume: &VolumeRecord,
        a: &AttachmentRecord,
    ) -> Result<Arc<dyn Lun>, ExportError> {
        if volume.kind != VolumeKind::Delta {
            let lun = FileLun::open(Path::new(&volume.path), a.block_size, a.read_only).map_err(
                |source| ExportError::Open {
                    volume: volume.id.clone(),
                    path: volume.path.clone(),
                    source,
                },
            )?;
            // Writes through the target to a managed volume are tracked: its next
            // incremental reads only what they wrote.
            if !a.read_only
                && let Some(tracker) = self.svc.write_tracker(volume)
            {
                return Ok(Arc::new(crate::tracking::TrackedLun::new(lun, tracker)));
            }
            return Ok(Arc::new(lun));
        }
        Ok(Arc::new(self.deltas.open_volume(&volume.id, a.block_size)?))
    }
}

/// 16 characters from a 62-letter alphabet: about 95 bits, and within the 12–16
/// characters every initiator accepts as a CHAP secret.
fn random_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
