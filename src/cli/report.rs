//! `blockdelta report [--since 24h] [--json]`: the LVM script's mail, from the server.

use serde_json::{Value, json};

use super::Channel;
use super::policies::run_json;
use blockdelta::api::pb;

/// `blockdelta report [--since 24h]`.
pub async fn run(channel: Channel, since: String, json: bool) -> anyhow::Result<()> {
    use blockdelta::api::pb::report_service_client::ReportServiceClient;
    let r = ReportServiceClient::new(channel)
        .get_report(pb::GetReportRequest { since })
        .await?
        .into_inner();
    let totals = r.totals.unwrap_or_default();
    let repo = r.repository.unwrap_or_default();
    if json {
        let volumes: Vec<Value> = r
            .volumes
            .iter()
            .map(|v| {
                json!({"volume": v.volume_id, "name": v.name,
                    "backups": v.backups.iter().map(|b| json!({
                        "id": b.id, "kind": b.kind, "status": b.status, "merged": b.merged,
                        "started_at": b.started_at,
                        "completed_at": if b.completed_at.is_empty() { Value::Null } else { json!(b.completed_at) },
                        "duration_seconds": b.duration_seconds, "size": b.size,
                        "changed_bytes": b.changed_bytes, "stored_bytes": b.stored_bytes,
                        "throughput_bytes_per_second": b.throughput_bytes_per_second,
                        "error": if b.error.is_empty() { Value::Null } else { json!(b.error) },
                    })).collect::<Vec<_>>()})
            })
            .collect();
        let policies: Vec<Value> = r
            .policies
            .iter()
            .map(|p| {
                json!({"project": p.project, "name": p.name, "succeeded": p.succeeded,
                    "failed": p.failed, "running": p.running,
                    "runs": p.runs.iter().map(run_json).collect::<Vec<_>>()})
            })
            .collect();
        outln!(
            "{}",
            json!({
                "since": r.since, "generated_at": r.generated_at,
                "volumes": volumes, "policies": policies,
                "totals": {"backups": totals.backups, "available": totals.available,
                    "failed": totals.failed, "changed_bytes": totals.changed_bytes,
                    "stored_bytes": totals.stored_bytes},
                "repository": {"location": repo.location, "used_bytes": repo.used_bytes,
                    "total_bytes": repo.total_bytes, "free_bytes": repo.free_bytes,
                    "free_percent": repo.free_percent},
            })
        );
        return Ok(());
    }
    use super::output::human;
    outln!("blockdelta report, {} to {}", r.since, r.generated_at);
    for v in &r.volumes {
        outln!("");
        outln!("volume {} ({})", v.name, v.volume_id);
        outln!(
            "  {:<20} {:<11} {:<9} {:<24} {:>9} {:>10} {:>10} {:>12}",
            "BACKUP",
            "KIND",
            "STATUS",
            "STARTED",
            "SECONDS",
            "CHANGED",
            "STORED",
            "THROUGHPUT"
        );
        for b in &v.backups {
            outln!(
                "  {:<20} {:<11} {:<9} {:<24} {:>9} {:>10} {:>10} {:>12}",
                b.id,
                if b.merged { "full*" } else { &b.kind },
                b.status,
                b.started_at,
                b.duration_seconds.map_or("-".into(), |d| format!("{d:.1}")),
                human(b.changed_bytes),
                human(b.stored_bytes),
                b.throughput_bytes_per_second
                    .map_or("-".into(), |t| format!("{}/s", human(t as u64)))
            );
        }
    }
    for p in &r.policies {
        outln!("");
        outln!(
            "policy {}: {} runs, {} succeeded, {} failed, {} running",
            p.name,
            p.runs.len(),
            p.succeeded,
            p.failed,
            p.running
        );
        for run in p.runs.iter().filter(|r| r.outcome == "failed") {
            outln!("  failed {} on {}: {}", run.id, run.volume_id, run.error);
        }
    }
    outln!("");
    outln!(
        "totals: {} backups ({} available, {} failed), {} changed, {} stored",
        totals.backups,
        totals.available,
        totals.failed,
        human(totals.changed_bytes),
        human(totals.stored_bytes)
    );
    let free = match (repo.free_bytes, repo.free_percent) {
        (Some(free), Some(pct)) => format!("{} free ({pct:.1} %)", human(free)),
        _ => "free space not known (object store)".to_string(),
    };
    outln!(
        "repository {}: {} used, {free}",
        repo.location,
        human(repo.used_bytes)
    );
    Ok(())
}
