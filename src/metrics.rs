//! Prometheus metrics (`serve --metrics-listen`), with the prometheus crate: counters and
//! histograms the jobs move as they end, and gauges the service sets at each scrape from
//! the catalog and the repository (backups by status, repository bytes, quota usage).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Seconds: from a small volume's backup to a large one's.
const DURATION_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0];

pub struct Metrics {
    registry: Registry,
    /// Backups by status, now (set at each scrape).
    pub backups: IntGaugeVec,
    /// Bytes of volumes read by backups that became available.
    pub backup_bytes_read: IntCounter,
    /// Bytes those backups stored in the repository.
    pub backup_bytes_stored: IntCounter,
    /// Backup jobs ended, by outcome (`available`, `error`).
    pub backups_ended: IntCounterVec,
    pub backup_seconds: Histogram,
    /// Restore jobs ended, by outcome.
    pub restores_ended: IntCounterVec,
    pub restore_seconds: Histogram,
    /// Policy runs ended, by outcome.
    pub policy_runs: IntCounterVec,
    /// Bytes of the repository's packs and indexes (set at each scrape).
    pub repository_bytes: IntGauge,
    /// Per project and resource: what is used, and the limit (-1: unlimited).
    pub quota_usage: IntGaugeVec,
    pub quota_limit: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("blockdelta".into()), None)
            .unwrap_or_else(|_| Registry::new());
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let histogram = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec()))
                .expect("valid metric")
        };
        let m = Metrics {
            backups: gauge_vec("backups", "Backups by status.", &["status"]),
            backup_bytes_read: IntCounter::new(
                "backup_read_bytes_total",
                "Volume bytes read by backups that became available.",
            )
            .expect("valid metric"),
            backup_bytes_stored: IntCounter::new(
                "backup_stored_bytes_total",
                "Repository bytes stored by backups that became available.",
            )
            .expect("valid metric"),
            backups_ended: counter_vec(
                "backup_jobs_total",
                "Backup jobs ended, by outcome.",
                &["outcome"],
            ),
            backup_seconds: histogram(
                "backup_duration_seconds",
                "Time of backups that became available.",
            ),
            restores_ended: counter_vec(
                "restore_jobs_total",
                "Restore jobs ended, by outcome.",
                &["outcome"],
            ),
            restore_seconds: histogram(
                "restore_duration_seconds",
                "Time of restores that completed.",
            ),
            policy_runs: counter_vec(
                "policy_runs_total",
                "Policy runs ended, by outcome.",
                &["outcome"],
            ),
            repository_bytes: IntGauge::new(
                "repository_bytes",
                "Bytes of the repository's packs, indexes and fingerprints.",
            )
            .expect("valid metric"),
            quota_usage: gauge_vec(
                "quota_usage",
                "What a project uses of a quota's resource.",
                &["project", "resource"],
            ),
            quota_limit: gauge_vec(
                "quota_limit",
                "A project's quota limit (-1: unlimited).",
                &["project", "resource"],
            ),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.backups.clone()),
            Box::new(m.backup_bytes_read.clone()),
            Box::new(m.backup_bytes_stored.clone()),
            Box::new(m.backups_ended.clone()),
            Box::new(m.backup_seconds.clone()),
            Box::new(m.restores_ended.clone()),
            Box::new(m.restore_seconds.clone()),
            Box::new(m.policy_runs.clone()),
            Box::new(m.repository_bytes.clone()),
            Box::new(m.quota_usage.clone()),
            Box::new(m.quota_limit.clone()),
        ];
        for c in collectors {
            // Names are distinct constants: registering cannot collide.
            let _ = m.registry.register(c);
        }
        m
    }

    /// The text exposition format, as `/metrics` serves it.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_is_exposed_once_moved() {
        let m = super::Metrics::new();
        m.backups.with_label_values(&["available"]).set(2);
        m.backup_bytes_stored.inc_by(4096);
        m.backups_ended.with_label_values(&["available"]).inc();
        m.backup_seconds.observe(0.3);
        let text = m.encode();
        for line in [
            "blockdelta_backups{status=\"available\"} 2",
            "blockdelta_backup_stored_bytes_total 4096",
            "blockdelta_backup_jobs_total{outcome=\"available\"} 1",
            "blockdelta_backup_duration_seconds_count 1",
            "blockdelta_repository_bytes 0",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }
}
