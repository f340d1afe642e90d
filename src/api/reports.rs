//! `blockdelta.v1.ReportService`: what happened since a time, per volume and per policy.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::caller;
use super::pb::report_service_server::ReportService;
use super::policies::run;
use super::{Api, blocking, pb};
use crate::engine::ReportView;

pub struct ReportApi {
    pub api: Arc<Api>,
}

fn report(v: ReportView) -> pb::Report {
    let r = v.report;
    let space = v.repository;
    pb::Report {
        since: v.since,
        generated_at: v.generated_at,
        volumes: r
            .volumes
            .into_iter()
            .map(|vol| pb::VolumeReport {
                volume_id: vol.volume_id,
                name: vol.name,
                backups: vol
                    .backups
                    .into_iter()
                    .map(|l| pb::BackupReport {
                        kind: l.record.kind.to_string(),
                        status: l.record.status.to_string(),
                        merged: !l.record.merged_at.is_empty(),
                        duration_seconds: l.duration_seconds,
                        size: l.record.size,
                        changed_bytes: l.changed_bytes,
                        stored_bytes: l.record.stored_bytes,
                        throughput_bytes_per_second: l.throughput,
                        id: l.record.id,
                        started_at: l.record.created_at,
                        completed_at: l.record.completed_at,
                        error: l.record.error,
                    })
                    .collect(),
            })
            .collect(),
        policies: r
            .policies
            .into_iter()
            .map(|p| pb::PolicyReport {
                project: p.project,
                name: p.name,
                succeeded: p.succeeded,
                failed: p.failed,
                running: p.running,
                runs: p.runs.into_iter().map(run).collect(),
            })
            .collect(),
        totals: Some(pb::ReportTotals {
            backups: r.totals.backups,
            available: r.totals.available,
            failed: r.totals.failed,
            changed_bytes: r.totals.changed_bytes,
            stored_bytes: r.totals.stored_bytes,
        }),
        repository: Some(pb::RepositoryUsage {
            free_percent: match (space.free_bytes, space.total_bytes) {
                (Some(free), Some(total)) if total > 0 => Some(free as f64 * 100.0 / total as f64),
                _ => None,
            },
            location: space.location,
            used_bytes: space.used_bytes,
            total_bytes: space.total_bytes,
            free_bytes: space.free_bytes,
        }),
    }
}

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn get_report(
        &self,
        req: Request<pb::GetReportRequest>,
    ) -> Result<Response<pb::Report>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            Ok(report(api.svc.report(&who, &r.since)?))
        })
        .await
    }
}
