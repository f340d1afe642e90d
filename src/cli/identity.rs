//! `blockdelta project …`, `token …`, `quota …` and `whoami`: IdentityService.

use clap::Subcommand;
use serde_json::{Value, json};

use super::Channel;
use blockdelta::api::pb;
use blockdelta::api::pb::identity_service_client::IdentityServiceClient;

#[derive(Subcommand)]
pub enum ProjectCommand {
    /// A new project (admin only).
    Create {
        name: String,
        /// Whether delta volumes may be made in it [default: the server's delta_enabled].
        #[arg(long)]
        delta_enabled: Option<bool>,
    },
    /// Every project (an admin), or your own.
    List,
    /// Change a project's settings (admin only).
    Set {
        name: String,
        #[arg(long)]
        delta_enabled: Option<bool>,
    },
    /// Delete an empty project with its tokens and quotas (admin only).
    Delete { name: String },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// A new bearer token of the project given by the global --project [default: your
    /// own]; its secret is printed once and stored nowhere (admin only).
    Create {
        /// admin | member | reader
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Tokens: id, project, role, created, last used (never a secret).
    List {
        /// Only this project's.
        #[arg(long = "of-project")]
        of_project: Option<String>,
    },
    /// Revoke a token by id: it stops working at once.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum QuotaCommand {
    /// A project's limits (-1 = unlimited), with --usage what it holds.
    Show {
        project: String,
        #[arg(long)]
        usage: bool,
    },
    /// Set some of a project's limits (admin only); -1 = unlimited.
    Set {
        project: String,
        #[arg(long, allow_negative_numbers = true)]
        volumes: Option<i64>,
        #[arg(long, allow_negative_numbers = true)]
        gigabytes: Option<i64>,
        #[arg(long, allow_negative_numbers = true)]
        backups: Option<i64>,
        #[arg(long, allow_negative_numbers = true)]
        backup_gigabytes: Option<i64>,
        #[arg(long, allow_negative_numbers = true)]
        delta_volumes: Option<i64>,
    },
    /// The limits a new project starts with.
    Defaults,
}

fn project_json(p: &pb::Project) -> Value {
    json!({"name": p.name, "created_at": p.created_at, "delta_enabled": p.delta_enabled})
}

fn token_json(t: &pb::Token) -> Value {
    json!({
        "id": t.id, "project": t.project, "role": t.role, "created_at": t.created_at,
        "last_used_at": t.last_used_at, "revoked_at": t.revoked_at, "description": t.description,
    })
}

fn print_project(p: &pb::Project, json: bool) {
    if json {
        outln!("{}", project_json(p));
    } else {
        outln!(
            "{:<24} delta volumes {:<9} created {}",
            p.name,
            if p.delta_enabled {
                "enabled"
            } else {
                "disabled"
            },
            p.created_at
        );
    }
}

fn print_token(t: &pb::Token, json: bool) {
    if json {
        outln!("{}", token_json(t));
    } else {
        let last = if t.last_used_at.is_empty() {
            "never"
        } else {
            &t.last_used_at
        };
        let state = if t.revoked_at.is_empty() {
            ""
        } else {
            "  REVOKED"
        };
        outln!(
            "{}  {:<16} {:<7} created {}  last used {last}{state}",
            t.id,
            t.project,
            t.role,
            t.created_at
        );
    }
}

fn print_quota(q: &pb::Quota, json: bool) {
    let l = q.limits.unwrap_or_default();
    let rows = [
        ("volumes", l.volumes, q.usage.as_ref().map(|u| u.volumes)),
        (
            "gigabytes",
            l.gigabytes,
            q.usage.as_ref().map(|u| u.gigabytes),
        ),
        ("backups", l.backups, q.usage.as_ref().map(|u| u.backups)),
        (
            "backup_gigabytes",
            l.backup_gigabytes,
            q.usage.as_ref().map(|u| u.backup_gigabytes),
        ),
        (
            "delta_volumes",
            l.delta_volumes,
            q.usage.as_ref().map(|u| u.delta_volumes),
        ),
    ];
    if json {
        let mut out = json!({"project": q.project});
        for (name, limit, used) in rows {
            out[name] = json!({"limit": limit, "in_use": used});
        }
        if let Some(u) = &q.usage {
            out["volume_bytes"] = json!(u.volume_bytes);
            out["backup_bytes"] = json!(u.backup_bytes);
            out["stored_bytes"] = json!(u.stored_bytes);
        }
        outln!("{out}");
        return;
    }
    if !q.project.is_empty() {
        outln!("project {}", q.project);
    }
    outln!("{:<18} {:>8} {:>8}", "RESOURCE", "LIMIT", "IN USE");
    for (name, limit, used) in rows {
        let used = used.map_or_else(|| "-".to_string(), |u| u.to_string());
        outln!("{name:<18} {limit:>8} {used:>8}");
    }
    if let Some(u) = &q.usage {
        outln!(
            "bytes: volumes {}, backups {} (volume size), stored {}",
            super::output::human(u.volume_bytes),
            super::output::human(u.backup_bytes),
            super::output::human(u.stored_bytes)
        );
    }
}

pub async fn project(channel: Channel, cmd: ProjectCommand, json: bool) -> anyhow::Result<()> {
    let mut c = IdentityServiceClient::new(channel);
    match cmd {
        ProjectCommand::Create {
            name,
            delta_enabled,
        } => {
            let p = c
                .create_project(pb::CreateProjectRequest {
                    name,
                    delta_enabled,
                })
                .await?
                .into_inner();
            print_project(&p, json);
        }
        ProjectCommand::List => {
            let r = c
                .list_projects(pb::ListProjectsRequest {})
                .await?
                .into_inner();
            if !json {
                outln!("{:<24} {:<22} CREATED", "PROJECT", "DELTA VOLUMES");
            }
            for p in &r.projects {
                print_project(p, json);
            }
        }
        ProjectCommand::Set {
            name,
            delta_enabled,
        } => {
            let p = c
                .update_project(pb::UpdateProjectRequest {
                    name,
                    delta_enabled,
                })
                .await?
                .into_inner();
            print_project(&p, json);
        }
        ProjectCommand::Delete { name } => {
            let r = c
                .delete_project(pb::DeleteProjectRequest { name })
                .await?
                .into_inner();
            if json {
                outln!("{}", json!({"name": r.name, "deleted": true}));
            } else {
                outln!("deleted project {}", r.name);
            }
        }
    }
    Ok(())
}

pub async fn token(
    channel: Channel,
    cmd: TokenCommand,
    project: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut c = IdentityServiceClient::new(channel);
    match cmd {
        TokenCommand::Create { role, description } => {
            let t = c
                .create_token(pb::CreateTokenRequest {
                    project: project.unwrap_or_default(),
                    role,
                    description,
                })
                .await?
                .into_inner();
            let record = t.record.unwrap_or_default();
            if json {
                let mut out = token_json(&record);
                out["token"] = json!(t.token);
                outln!("{out}");
            } else {
                outln!(
                    "token {} for project {} ({})",
                    t.id,
                    record.project,
                    record.role
                );
                outln!("{}", t.token);
                eprintln!("(the secret above is shown only now: keep it)");
            }
        }
        TokenCommand::List { of_project } => {
            let r = c
                .list_tokens(pb::ListTokensRequest {
                    project: of_project.unwrap_or_default(),
                })
                .await?
                .into_inner();
            if !json {
                outln!(
                    "{:<20}  {:<16} {:<7} {:<25} {:<25} STATE",
                    "ID",
                    "PROJECT",
                    "ROLE",
                    "CREATED",
                    "LAST USED"
                );
            }
            for t in &r.tokens {
                print_token(t, json);
            }
        }
        TokenCommand::Revoke { id } => {
            let t = c
                .revoke_token(pb::RevokeTokenRequest { id })
                .await?
                .into_inner();
            print_token(&t, json);
        }
    }
    Ok(())
}

pub async fn quota(channel: Channel, cmd: QuotaCommand, json: bool) -> anyhow::Result<()> {
    let mut c = IdentityServiceClient::new(channel);
    let q = match cmd {
        QuotaCommand::Show { project, usage } => {
            c.get_quota(pb::GetQuotaRequest { project, usage }).await?
        }
        QuotaCommand::Set {
            project,
            volumes,
            gigabytes,
            backups,
            backup_gigabytes,
            delta_volumes,
        } => {
            c.set_quota(pb::SetQuotaRequest {
                project,
                volumes,
                gigabytes,
                backups,
                backup_gigabytes,
                delta_volumes,
            })
            .await?
        }
        QuotaCommand::Defaults => c.get_quota_defaults(pb::GetQuotaDefaultsRequest {}).await?,
    };
    print_quota(&q.into_inner(), json);
    Ok(())
}

pub async fn whoami(channel: Channel, json: bool) -> anyhow::Result<()> {
    let mut c = IdentityServiceClient::new(channel);
    let i = c.who_am_i(pb::WhoAmIRequest {}).await?.into_inner();
    if json {
        outln!(
            "{}",
            json!({"token_id": i.token_id, "project": i.project, "role": i.role, "acting_for": i.acting_for})
        );
    } else {
        out!("token {} of project {} ({})", i.token_id, i.project, i.role);
        if !i.acting_for.is_empty() {
            out!(", acting for project {}", i.acting_for);
        }
        outln!();
    }
    Ok(())
}
