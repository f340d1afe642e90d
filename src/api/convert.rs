//! Catalog records → wire messages, with live progress for running jobs and live
//! session counts for attachments.

use super::{Api, pb};
use crate::delta::DELTA_SOURCE_TYPE;
use crate::engine::Service;
use crate::engine::{AttachmentRecord, BackupRecord, Status, VolumeRecord};
use crate::kinds::VolumeKind;

pub fn volume(api: &Api, v: VolumeRecord) -> pb::Volume {
    let (done, total) = api.svc.volume_progress(&v.id).unwrap_or(match v.status {
        Status::Available | Status::InUse => (v.size, v.size),
        _ => (0, 0),
    });
    let source = if v.kind == VolumeKind::Delta {
        api.deltas.source_of(&v.id)
    } else {
        None
    };
    let attachment = api
        .exports
        .attachment(&v.id)
        .ok()
        .flatten()
        .map(|(a, sessions)| pb::Attachment {
            // The secret leaves the server in AttachVolume's answer only.
            chap_secret: String::new(),
            ..attachment(api, a, sessions)
        });
    pb::Volume {
        id: v.id,
        project: v.project,
        name: v.name,
        kind: v.kind.to_string(),
        path: v.path,
        size: v.size,
        status: v.status.to_string(),
        created_at: v.created_at,
        error: v.error,
        progress_done: done,
        progress_total: total,
        changed_bytes: source.as_ref().map_or(0, |s| s.changed_bytes),
        source_details: source.map(|s| pb::VolumeSourceDetails {
            r#type: DELTA_SOURCE_TYPE.to_string(),
            first_backup_id: s.first_backup_id,
            second_backup_id: s.second_backup_id,
            change_block_size_in_bytes: s.change_block_size,
        }),
        attachment,
    }
}

pub fn attachment(api: &Api, a: AttachmentRecord, sessions: u32) -> pb::Attachment {
    let (portal, state) = api.exports.placement(&a);
    pb::Attachment {
        node: a.node,
        state: state.as_str().to_string(),
        volume_id: a.volume_id,
        portal,
        target_iqn: a.target_name,
        lun: 0,
        block_size: a.block_size,
        read_only: a.read_only,
        initiator: a.initiator,
        chap_username: a.chap_user,
        chap_secret: a.chap_secret,
        sessions,
        attached_at: a.attached_at,
    }
}

pub fn backup(svc: &Service, b: BackupRecord) -> pb::Backup {
    let (done, total) = svc.backup_progress(&b.id).unwrap_or(match b.status {
        Status::Available | Status::Restoring => (b.size, b.size),
        _ => (0, b.size),
    });
    pb::Backup {
        id: b.id,
        project: b.project,
        volume_id: b.volume_id,
        name: b.name,
        kind: b.kind.to_string(),
        parent_id: b.parent_id.unwrap_or_default(),
        status: b.status.to_string(),
        size: b.size,
        compression: b.compression,
        progress_done: done,
        progress_total: total,
        changed_blocks: b.changed_blocks,
        allocated_blocks: b.allocated_blocks,
        stored_bytes: b.stored_bytes,
        created_at: b.created_at,
        completed_at: b.completed_at,
        error: b.error,
        content_hash: b.content_hash,
        chain_id: b.chain_id,
        merged_at: b.merged_at,
        change_source: b
            .change_source
            .map_or_else(String::new, |c| c.as_str().to_string()),
        read_bytes: b.read_bytes,
    }
}
