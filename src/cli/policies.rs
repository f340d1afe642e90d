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
