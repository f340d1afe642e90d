//! `blockdelta serve`: catalog, repository, the iSCSI target and gRPC, on embedded
//! defaults unless a config file, the environment or flags say otherwise.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use blockdelta::api::Api;
use blockdelta::config::{Config, Overrides};
use blockdelta::{Deltas, ExportConfig, Exports, Service};

#[derive(Args)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "BLOCKDELTA_CONFIG")]
    config: Option<PathBuf>,
    /// Catalog, repository and managed volumes [default: ./blockdelta-data].
    #[arg(long, env = "BLOCKDELTA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051]; port 0 picks a free port.
    #[arg(long, env = "BLOCKDELTA_GRPC_LISTEN")]
    grpc_listen: Option<String>,
    /// iSCSI listen address [default: 127.0.0.1:3260]; port 0 picks a free port.
    #[arg(long, env = "BLOCKDELTA_ISCSI_LISTEN")]
    iscsi_listen: Option<String>,
    /// HOST:PORT (or HOST) that discovery and attachments tell hosts to connect to, when
    /// they reach this server elsewhere than the listen address [default: the listen address].
    #[arg(long, env = "BLOCKDELTA_ISCSI_ADVERTISE")]
    iscsi_advertise: Option<String>,
    /// Require CHAP on every attachment [default: false].
    #[arg(long, env = "BLOCKDELTA_ISCSI_CHAP")]
    iscsi_chap: Option<bool>,
    /// CHAP user a discovery (SendTargets) session must log in with.
    #[arg(long, env = "BLOCKDELTA_ISCSI_DISCOVERY_CHAP_USER")]
    iscsi_discovery_chap_user: Option<String>,
    /// CHAP secret for --iscsi-discovery-chap-user (12 characters or more).
    #[arg(
        long,
        env = "BLOCKDELTA_ISCSI_DISCOVERY_CHAP_SECRET",
        hide_env_values = true
    )]
    iscsi_discovery_chap_secret: Option<String>,
    /// Allow delta volumes [default: true].
    #[arg(long, env = "BLOCKDELTA_DELTA_ENABLED")]
    delta_enabled: Option<bool>,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Test builds only: arms the failpoints named in FAILPOINTS for the server's life.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    // Catalog, packs, indexes and restored images hold the users' data and CHAP secrets:
    // owner only, whatever the caller's umask (files 0600, folders 0700).
    // SAFETY: umask has no failure mode; set before any file is created.
    unsafe { libc::umask(0o077) };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Config::load(
        args.config.as_deref(),
        Overrides {
            data_dir: args.data_dir,
            grpc_listen: args.grpc_listen,
            iscsi_listen: args.iscsi_listen,
            iscsi_advertise: args.iscsi_advertise,
            iscsi_chap: args.iscsi_chap,
            iscsi_discovery_chap_user: args.iscsi_discovery_chap_user,
            iscsi_discovery_chap_secret: args.iscsi_discovery_chap_secret,
            delta_enabled: args.delta_enabled,
        },
    )?;
    // Every address is checked and the gRPC port bound before anything is written: a
    // start that fails on its configuration leaves nothing behind.
    let listener = tokio::net::TcpListener::bind(&config.grpc_listen)
        .await
        .with_context(|| format!("binding gRPC on {}", config.grpc_listen))?;
    let iscsi_listen = tokio::net::lookup_host(&config.iscsi_listen)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("iSCSI listen address {:?}", config.iscsi_listen))?;
    let fresh_data_dir = !config.data_dir.exists();
    let data_dir = config.data_dir.clone();
    let started = async {
        let svc = tokio::task::spawn_blocking(move || Service::open(&data_dir))
            .await?
            .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
        let deltas = Deltas::new(svc.clone());
        let exports = Exports::start(
            svc.clone(),
            deltas.clone(),
            ExportConfig {
                listen: iscsi_listen,
                advertise: config.iscsi_advertise.clone(),
                discovery_chap: config.discovery_chap(),
                iqn_prefix: config.iscsi_iqn_prefix.clone(),
                require_chap: config.iscsi_chap,
            },
        )
        .await
        .with_context(|| format!("starting the iSCSI target on {}", config.iscsi_listen))?;
        anyhow::Ok((svc, deltas, exports))
    }
    .await;
    let (svc, deltas, exports) = match started {
        Ok(s) => s,
        Err(e) => {
            // A data dir this start created holds nothing yet: do not leave it behind.
            if fresh_data_dir && let Err(rm) = std::fs::remove_dir_all(&config.data_dir) {
                tracing::warn!(error = %rm, "cannot remove the data directory this start created");
            }
            return Err(e);
        }
    };
    let addr = listener.local_addr()?;
    println!("iscsi listening on {}", exports.listen_address());
    println!("grpc listening on {addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, iscsi = %exports.listen_address(), advertised = %exports.portal(), data_dir = %config.data_dir.display(), "blockdelta serving");
    let api = Arc::new(Api {
        svc: svc.clone(),
        exports,
        deltas,
        delta_enabled: config.delta_enabled,
    });
    blockdelta::api::serve(api, listener, shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!("gRPC server: {e}"))?;
    tracing::info!("shutting down: interrupting running jobs");
    tokio::task::spawn_blocking(move || svc.shutdown()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
