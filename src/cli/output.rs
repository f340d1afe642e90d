//! What the CLI prints: one readable block or line per record, or with `--json`
//! one JSON object per record (keys as the proto's field names, plus `parent`,
//! `volume` and `kind` where a script expects them).

use serde_json::{Value, json};

use blockdelta::api::pb;

pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn or_null<T: serde::Serialize>(v: Option<T>) -> Value {
    v.map_or(Value::Null, |v| json!(v))
}

pub fn attachment_json(a: &pb::Attachment) -> Value {
    json!({
        "volume_id": a.volume_id, "portal": a.portal, "target_iqn": a.target_iqn, "lun": a.lun,
        "block_size": a.block_size, "read_only": a.read_only, "initiator": a.initiator,
        "chap_username": a.chap_username, "chap_secret": a.chap_secret,
        "sessions": a.sessions, "attached_at": a.attached_at, "node": a.node, "state": a.state,
    })
}

pub fn volume_json(v: &pb::Volume) -> Value {
    let source = v.source_details.as_ref().map(|s| {
        json!({
            "type": s.r#type, "first_backup_id": s.first_backup_id,
            "second_backup_id": s.second_backup_id,
            "change_block_size_in_bytes": s.change_block_size_in_bytes,
        })
    });
    json!({
        "id": v.id, "project": v.project, "name": v.name, "kind": v.kind, "path": v.path, "size": v.size,
        "status": v.status, "created_at": v.created_at, "error": v.error,
        "progress_done": v.progress_done, "progress_total": v.progress_total,
        "source_details": or_null(source), "changed_bytes": v.changed_bytes,
        "attachment": or_null(v.attachment.as_ref().map(attachment_json)),
    })
}

pub fn print_volume(v: &pb::Volume, json: bool, detailed: bool) {
    if json {
        outln!("{}", volume_json(v));
    } else if detailed {
        outln!("id:         {}", v.id);
        outln!("name:       {}", v.name);
        outln!("kind:       {}", v.kind);
        outln!("status:     {}", v.status);
        outln!("size:       {} ({} bytes)", human(v.size), v.size);
        if let Some(s) = &v.source_details {
            outln!(
                "source:     {} {} -> {}, change blocks of {} bytes",
                s.r#type,
                s.first_backup_id,
                s.second_backup_id,
                s.change_block_size_in_bytes
            );
            outln!(
                "changed:    {} ({} bytes)",
                human(v.changed_bytes),
                v.changed_bytes
            );
        } else {
            outln!("path:       {}", v.path);
        }
        if let Some(a) = &v.attachment {
            outln!(
                "attached:   {} at {} LUN {} ({} sessions)",
                a.target_iqn,
                a.portal,
                a.lun,
                a.sessions
            );
        }
        outln!("created_at: {}", v.created_at);
        if !v.error.is_empty() {
            outln!("error:      {}", v.error);
        }
    } else {
        outln!(
            "{:<20}  {:<20} {:<10} {:>10}  {:<10} {:<12} {}",
            v.id,
            v.name,
            v.kind,
            human(v.size),
            v.status,
            v.project,
            if v.kind == "delta" { "-" } else { &v.path }
        );
    }
}

/// The header row of `volume list`.
pub fn volume_header() {
    outln!(
        "{:<20}  {:<20} {:<10} {:>10}  {:<10} {:<12} PATH",
        "ID",
        "NAME",
        "KIND",
        "SIZE",
        "STATUS",
        "PROJECT"
    );
}

pub fn print_attachment(a: &pb::Attachment, json: bool) {
    if json {
        outln!("{}", attachment_json(a));
        return;
    }
    outln!("volume:      {}", a.volume_id);
    outln!("portal:      {}", a.portal);
    outln!("target:      {}", a.target_iqn);
    outln!("lun:         {}", a.lun);
    outln!("block size:  {}", a.block_size);
    outln!("read-only:   {}", a.read_only);
    outln!("node:        {} ({})", a.node, a.state);
    if !a.initiator.is_empty() {
        outln!("initiator:   {}", a.initiator);
    }
    if !a.chap_username.is_empty() {
        outln!("chap user:   {}", a.chap_username);
        outln!("chap secret: {}", a.chap_secret);
    }
    outln!("# on the host, with open-iscsi (iscsid running):");
    outln!("iscsiadm -m discovery -t st -p {}", a.portal);
    if !a.chap_username.is_empty() {
        for (key, value) in [
            ("node.session.auth.authmethod", "CHAP"),
            ("node.session.auth.username", a.chap_username.as_str()),
            ("node.session.auth.password", a.chap_secret.as_str()),
        ] {
            outln!(
                "iscsiadm -m node -T {} -p {} -o update -n {key} -v {value}",
                a.target_iqn,
                a.portal
            );
        }
    }
    outln!(
        "iscsiadm -m node -T {} -p {} --login",
        a.target_iqn,
        a.portal
    );
}

pub fn backup_json(b: &pb::Backup) -> Value {
    json!({
        "id": b.id, "project": b.project, "status": b.status, "kind": b.kind,
        "parent": if b.parent_id.is_empty() { Value::Null } else { json!(b.parent_id) },
        "volume": b.volume_id, "name": b.name, "size": b.size, "created_at": b.created_at,
        "completed_at": b.completed_at, "compression": b.compression, "chain": b.chain_id,
        "changed_blocks": b.changed_blocks, "allocated_blocks": b.allocated_blocks,
        "stored_bytes": b.stored_bytes, "content_hash": b.content_hash, "error": b.error,
        "progress_done": b.progress_done, "progress_total": b.progress_total,
        "merged": !b.merged_at.is_empty(),
        "merged_at": if b.merged_at.is_empty() { Value::Null } else { json!(b.merged_at) },
        "change_source": if b.change_source.is_empty() { Value::Null } else { json!(b.change_source) },
        "read_bytes": b.read_bytes,
    })
}

pub fn print_backup(b: &pb::Backup, json: bool, detailed: bool) {
    let parent = if b.parent_id.is_empty() {
        "-"
    } else {
        &b.parent_id
    };
    if json {
        outln!("{}", backup_json(b));
    } else if detailed {
        outln!("id:             {}", b.id);
        outln!("name:           {}", b.name);
        if b.merged_at.is_empty() {
            outln!("kind:           {}", b.kind);
        } else {
            outln!(
                "kind:           {} (synthetic: merged {})",
                b.kind,
                b.merged_at
            );
        }
        outln!("status:         {}", b.status);
        outln!("volume:         {}", b.volume_id);
        outln!("parent:         {parent}");
        outln!("size:           {} ({} bytes)", human(b.size), b.size);
        outln!(
            "progress:       {} / {}",
            human(b.progress_done),
            human(b.progress_total)
        );
        outln!("changed blocks: {}", b.changed_blocks);
        if !b.change_source.is_empty() {
            outln!(
                "changes found:  {} (read {})",
                b.change_source,
                human(b.read_bytes)
            );
        }
        outln!("stored:         {}", human(b.stored_bytes));
        outln!("compression:    {}", b.compression);
        outln!("created_at:     {}", b.created_at);
        if !b.error.is_empty() {
            outln!("error:          {}", b.error);
        }
    } else {
        outln!("{}", backup_row(b, ""));
    }
}

/// One `backup list` row; `volume_name` beside the volume's id when known.
pub fn backup_row(b: &pb::Backup, volume_name: &str) -> String {
    let parent = if b.parent_id.is_empty() {
        "-"
    } else {
        &b.parent_id
    };
    format!(
        "{:<20}  {:<20} {:<11} {:<10} {:<20} {:<16} {:<20} {:>9}  {}",
        b.id,
        b.name,
        b.kind,
        b.status,
        b.volume_id,
        if volume_name.is_empty() {
            "-"
        } else {
            volume_name
        },
        parent,
        b.changed_blocks,
        b.created_at
    )
}

/// The header row of `backup list`.
pub fn backup_header() -> String {
    format!(
        "{:<20}  {:<20} {:<11} {:<10} {:<20} {:<16} {:<20} {:>9}  CREATED",
        "ID", "NAME", "KIND", "STATUS", "VOLUME", "VOLUME NAME", "PARENT", "CHANGED"
    )
}

/// A whole listing (all the pages the CLI fetched) and where it stopped.
pub struct ExtentListing {
    pub what: String,
    pub first_backup_id: String,
    pub second_backup_id: String,
    pub block_size: u64,
    pub volume_size: u64,
    pub total_blocks: u64,
    pub extents: Vec<(u64, u64)>,
    pub next_page_token: String,
}

pub fn print_extents(l: &ExtentListing, json: bool) {
    if json {
        let extents: Vec<[u64; 2]> = l.extents.iter().map(|&(s, c)| [s, c]).collect();
        outln!(
            "{}",
            json!({
                "first_backup_id": l.first_backup_id, "second_backup_id": l.second_backup_id,
                "block_size": l.block_size, "volume_size": l.volume_size,
                "total_blocks": l.total_blocks, "extents": extents,
                "next_page_token": l.next_page_token,
            })
        );
        return;
    }
    let blocks: u64 = l.extents.iter().map(|e| e.1).sum();
    outln!(
        "# {}: {blocks} of {} blocks of {} bytes in {} extents",
        l.what,
        l.total_blocks,
        l.block_size,
        l.extents.len()
    );
    outln!("# first_block block_count byte_offset byte_length");
    for &(start, count) in &l.extents {
        let offset = start * l.block_size;
        let end = ((start + count) * l.block_size).min(l.volume_size);
        outln!("{start} {count} {offset} {}", end - offset);
    }
    if !l.next_page_token.is_empty() {
        outln!("# more: --page-token {}", l.next_page_token);
    }
}
