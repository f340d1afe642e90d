//! `blockdelta policy …`: backup policies (schedule, kind, retention, copy target) and
//! the volumes assigned to them.

use clap::Subcommand;
use serde_json::{Value, json};

use super::Channel;
use blockdelta::api::pb;
use blockdelta::api::pb::policy_service_client::PolicyServiceClient;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Create a policy. SPEC (UTC): cron ("30 2 * * *"), "every 15m", "hourly",
    /// "daily 02:00" or "weekly sun 03:00".
    Create {
        name: String,
        #[arg(long)]
        schedule: String,
        /// Runs are incrementals (a full when the volume has no chain yet).
        #[arg(long)]
        incremental: bool,
        /// With --incremental: a full every N runs [default: never; retention merges].
        #[arg(long, default_value_t = 0)]
        full_every: u32,
        /// Keep the newest N backups of each volume (the oldest kept becomes a synthetic full).
        #[arg(long, default_value_t = 0)]
        keep_last: u32,
        /// Keep backups younger than D days (with --keep-last: what either keeps).
        #[arg(long, default_value_t = 0)]
        keep_days: u32,
        /// After each run, copy the backup to this repository (a directory or
        /// s3://BUCKET/PREFIX on the server; admins only).
        #[arg(long)]
        copy_to: Option<String>,
    },
    /// Every policy of the project.
    List,
    /// A policy, its volumes with their next slot, and its recent runs.
    Show { name: String },
    /// Delete a policy (refused while volumes are assigned to it).
    Delete { name: String },
    /// Assign VOLUME (id or name) to policy NAME: it runs from the next slot on.
    Assign { volume: String, name: String },
    /// Stop running policy NAME on VOLUME.
    Unassign { volume: String, name: String },
    /// Run policy NAME now on each of its volumes, then prune and copy.
    Run {
        name: String,
        /// Wait for every run to end; exits non-zero when one failed.
        #[arg(long)]
        wait: bool,
    },
}

fn policy_json(p: &pb::Policy) -> Value {
    json!({
        "project": p.project, "name": p.name, "schedule": p.schedule,
        "incremental": p.incremental, "full_every": p.full_every, "keep_last": p.keep_last,
        "keep_days": p.keep_days,
        "copy_to": if p.copy_to.is_empty() { Value::Null } else { json!(p.copy_to) },
        "created_at": p.created_at,
        "volumes": p.volumes.iter().map(|v| json!({
            "volume": v.volume_id, "last_slot": v.last_slot, "next_slot": v.next_slot,
            "assigned_at": v.assigned_at,
        })).collect::<Vec<_>>(),
        "runs": p.runs.iter().map(run_json).collect::<Vec<_>>(),
    })
}

pub fn run_json(r: &pb::PolicyRun) -> Value {
    json!({
        "id": r.id, "policy": r.policy, "volume": r.volume_id, "slot": r.slot, "node": r.node,
        "backup": if r.backup_id.is_empty() { Value::Null } else { json!(r.backup_id) },
        "outcome": r.outcome,
        "error": if r.error.is_empty() { Value::Null } else { json!(r.error) },
        "pruned": r.pruned,
        "copied_to": if r.copied_to.is_empty() { Value::Null } else { json!(r.copied_to) },
        "started_at": r.started_at, "finished_at": r.finished_at,
    })
}

fn print_policy(p: &pb::Policy, json: bool) {
    if json {
        outln!("{}", policy_json(p));
        return;
    }
    outln!("name:        {}", p.name);
    outln!("project:     {}", p.project);
    outln!("schedule:    {} (UTC)", p.schedule);
    let kind = match (p.incremental, p.full_every) {
        (false, _) => "full every run".to_string(),
        (true, 0) => "incremental (forever: retention merges)".to_string(),
        (true, n) => format!("incremental, a full every {n} runs"),
    };
    outln!("kind:        {kind}");
    let keep = match (p.keep_last, p.keep_days) {
        (0, 0) => "everything".to_string(),
        (n, 0) => format!("the newest {n}"),
        (0, d) => format!("{d} days"),
        (n, d) => format!("the newest {n}, and {d} days"),
    };
    outln!("keeps:       {keep}");
    if !p.copy_to.is_empty() {
        outln!("copies to:   {}", p.copy_to);
    }
    for v in &p.volumes {
        outln!(
            "volume:      {}  last slot {}  next {}",
            v.volume_id,
            v.last_slot,
            v.next_slot
        );
    }
    for r in &p.runs {
        print_run(r);
    }
}

fn print_run(r: &pb::PolicyRun) {
    outln!(
        "run:         {}  {}  slot {}  {:<9}  backup {}{}{}",
        r.id,
        r.volume_id,
        r.slot,
        r.outcome,
        if r.backup_id.is_empty() {
            "-"
        } else {
            &r.backup_id
        },
        if r.pruned.is_empty() {
            String::new()
        } else {
            format!("  pruned {}", r.pruned.join(","))
        },
        if r.error.is_empty() {
            String::new()
        } else {
            format!("  error: {}", r.error)
        }
    );
}

pub async fn run(channel: Channel, cmd: PolicyCommand, json: bool) -> anyhow::Result<()> {
    let mut c = PolicyServiceClient::new(channel);
    match cmd {
        PolicyCommand::Create {
            name,
            schedule,
            incremental,
            full_every,
            keep_last,
            keep_days,
            copy_to,
        } => {
            let p = c
                .create_policy(pb::CreatePolicyRequest {
                    name,
                    schedule,
                    incremental,
                    full_every,
                    keep_last,
                    keep_days,
                    copy_to: copy_to.unwrap_or_default(),
                })
                .await?
                .into_inner();
            print_policy(&p, json);
        }
        PolicyCommand::List => {
            let all = c
                .list_policies(pb::ListPoliciesRequest {})
                .await?
                .into_inner()
                .policies;
            if json {
                for p in &all {
                    outln!("{}", policy_json(p));
                }
            } else {
                outln!(
                    "{:<24} {:<20} {:<6} {:>9} {:>9}  COPY TO",
                    "NAME",
                    "SCHEDULE",
                    "KIND",
                    "KEEP LAST",
                    "KEEP DAYS"
                );
                for p in &all {
                    outln!(
                        "{:<24} {:<20} {:<6} {:>9} {:>9}  {}",
                        p.name,
                        p.schedule,
                        if p.incremental { "incr" } else { "full" },
                        p.keep_last,
                        p.keep_days,
                        if p.copy_to.is_empty() {
                            "-"
                        } else {
                            &p.copy_to
                        }
                    );
                }
            }
        }
        PolicyCommand::Show { name } => {
            let p = c
                .get_policy(pb::GetPolicyRequest { name })
                .await?
                .into_inner();
            print_policy(&p, json);
        }
        PolicyCommand::Delete { name } => {
            c.delete_policy(pb::DeletePolicyRequest { name: name.clone() })
                .await?;
            if json {
                outln!("{}", json!({"deleted": name}));
            } else {
                outln!("policy {name} deleted");
            }
        }
        PolicyCommand::Assign { volume, name } => {
            let p = c
                .assign_policy(pb::AssignPolicyRequest {
                    volume,
                    policy: name,
                })
                .await?
                .into_inner();
            print_policy(&p, json);
        }
        PolicyCommand::Unassign { volume, name } => {
            let p = c
                .unassign_policy(pb::AssignPolicyRequest {
                    volume,
                    policy: name,
                })
                .await?
                .into_inner();
            print_policy(&p, json);
        }
        PolicyCommand::Run { name, wait } => {
            let runs = c
                .run_policy(pb::RunPolicyRequest {
                    name: name.clone(),
                    wait,
                })
                .await?
                .into_inner()
                .runs;
            for r in &runs {
                if json {
                    outln!("{}", run_json(r));
                } else {
                    print_run(r);
                }
            }
            if runs.is_empty() && !json {
                outln!("policy {name}: no volume to run (none assigned, or each has a run going)");
            }
            let failed: Vec<&str> = runs
                .iter()
                .filter(|r| r.outcome == "failed")
                .map(|r| r.id.as_str())
                .collect();
            if wait && !failed.is_empty() {
                anyhow::bail!("policy {name}: runs failed: {}", failed.join(", "));
            }
        }
    }
    Ok(())
}

/// `blockdelta report [--since 24h]`.
pub async fn report(channel: Channel, since: String, json: bool) -> anyhow::Result<()> {
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
