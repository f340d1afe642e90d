//! `blockdelta serve`: catalog, repository, the iSCSI target and gRPC, on embedded
//! defaults unless a config file, the environment or flags say otherwise.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

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
    /// Allow delta volumes [default: true]: the default of projects without a setting.
    #[arg(long, env = "BLOCKDELTA_DELTA_ENABLED")]
    delta_enabled: Option<bool>,
    /// A folder under which admins may register host files and devices (repeatable;
    /// the environment form is colon-separated). None: no host path may be used.
    #[arg(
        long = "volume-root",
        env = "BLOCKDELTA_VOLUME_ROOTS",
        value_delimiter = ':',
        value_name = "DIR"
    )]
    volume_roots: Vec<PathBuf>,
    /// PEM certificate (chain) for gRPC over TLS; with --tls-key.
    #[arg(long, env = "BLOCKDELTA_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "BLOCKDELTA_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA bundle: require client certificates signed by it (mutual TLS).
    #[arg(long, env = "BLOCKDELTA_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    #[command(flatten)]
    repository: super::repository::RepositoryArgs,
    /// The catalog: "sqlite" (DATA_DIR/catalog.sqlite) or postgres://USER@HOST:PORT/DB, shared
    /// by every node of a cluster [default: sqlite].
    #[arg(long, env = "BLOCKDELTA_CATALOG")]
    catalog: Option<String>,
    /// This node's name, unique among the nodes sharing the catalog [default: the host name].
    #[arg(long, env = "BLOCKDELTA_NODE_NAME")]
    node_name: Option<String>,
    /// Seconds a node's jobs outlive its last heartbeat; then another node fails them [default: 30].
    #[arg(long, env = "BLOCKDELTA_LEASE_SECONDS")]
    lease_seconds: Option<u64>,
    /// Seconds the clocks of the nodes and the object store may differ; gc spares packs
    /// this much older than the oldest running backup [default: 300].
    #[arg(long, env = "BLOCKDELTA_GC_CLOCK_SKEW_SECONDS")]
    gc_clock_skew_seconds: Option<u64>,
    /// Milliseconds a block written through the target may be tracked only in memory
    /// when the host asks for no durability [default: 1000].
    #[arg(long, env = "BLOCKDELTA_WRITE_TRACKING_WINDOW_MS")]
    write_tracking_window_ms: Option<u64>,
    /// Serve gRPC without TLS on a non-loopback address (tokens cross the network in
    /// the clear): refused without this flag.
    #[arg(long)]
    insecure_grpc: bool,
    /// Log lines as text or as JSON objects (one per line) [default: text].
    #[arg(long, env = "BLOCKDELTA_LOG_FORMAT", value_enum, default_value_t = super::logging::LogFormat::Text)]
    log_format: super::logging::LogFormat,
    /// Append the log to this file instead of stderr (no colour codes).
    #[arg(long, env = "BLOCKDELTA_LOG_FILE")]
    log_file: Option<PathBuf>,
    /// Also serve CSI's Identity and SnapshotMetadata on this unix socket, for the
    /// Kubernetes external-snapshot-metadata sidecar.
    #[arg(long, env = "BLOCKDELTA_CSI_SOCKET")]
    csi_socket: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0
    /// picks one, printed as "metrics listening on ADDR"). Off unless given.
    #[arg(long, env = "BLOCKDELTA_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Serve iSCSI without CHAP on a non-loopback address (any host that reaches the
    /// port can log in to attached volumes): refused without this flag.
    #[arg(long)]
    insecure_iscsi: bool,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Test builds only: arms the failpoints named in FAILPOINTS for the server's life.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    // Catalog, packs, indexes and restored images hold the users' data and CHAP secrets:
    // owner only, whatever the caller's umask (files 0600, folders 0700).
    // SAFETY: umask has no failure mode; set before any file is created.
    unsafe { libc::umask(0o077) };
    super::logging::init(args.log_format, args.log_file.as_deref())?;
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
            volume_roots: args.volume_roots,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            tls_client_ca: args.tls_client_ca,
            repository: args.repository.repository,
            s3_endpoint: args.repository.s3_endpoint,
            s3_region: args.repository.s3_region,
            catalog: args.catalog,
            node_name: args.node_name,
            lease_seconds: args.lease_seconds,
            gc_clock_skew_seconds: args.gc_clock_skew_seconds,
            write_tracking_window_ms: args.write_tracking_window_ms,
        },
    )?;
    let tls = server_tls(&config)?;
    // Every address is checked and the gRPC port bound before anything is written: a
    // start that fails on its configuration leaves nothing behind.
    let resolve = |what: &'static str, addr: String| async move {
        tokio::net::lookup_host(&addr)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .with_context(|| format!("{what} listen address {addr:?}"))
    };
    let grpc_listen = resolve("gRPC", config.grpc_listen.clone()).await?;
    let iscsi_listen = resolve("iSCSI", config.iscsi_listen.clone()).await?;
    // Refused before anything is bound: an insecure address is never listened on.
    refuse_insecure(
        grpc_listen,
        tls.is_some(),
        args.insecure_grpc,
        iscsi_listen,
        config.iscsi_chap,
        args.insecure_iscsi,
    )?;
    let listener = tokio::net::TcpListener::bind(grpc_listen)
        .await
        .with_context(|| format!("binding gRPC on {}", config.grpc_listen))?;
    let fresh_data_dir = !config.data_dir.exists();
    let data_dir = config.data_dir.clone();
    let volume_roots = config.volume_roots.clone();
    let repository = config.repository_location()?;
    let s3 = config.s3_settings();
    let cluster = config.cluster()?;
    let tracking_window = std::time::Duration::from_millis(config.write_tracking_window_ms);
    let started = async {
        let svc = tokio::task::spawn_blocking(move || {
            let svc = Service::open(
                &data_dir,
                &repository,
                &s3,
                volume_roots,
                cluster,
                tracking_window,
            )?;
            let token_file = data_dir.join("admin.token");
            if svc.bootstrap_admin_token(&token_file)? {
                tracing::warn!(file = %token_file.display(), "created the admin project's first admin token");
                eprintln!("admin token written to {}", token_file.display());
            }
            Ok::<_, blockdelta::EngineError>(svc)
        })
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
    svc.join_cluster(&addr.to_string(), &exports.portal());
    svc.start_scheduler();
    let metrics_listener = match &args.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr.as_str())
                .await
                .with_context(|| format!("binding --metrics-listen {addr}"))?,
        ),
        None => None,
    };
    let csi_listener = match &args.csi_socket {
        Some(path) => Some((
            blockdelta::api::bind_csi_socket(path).map_err(|e| anyhow::anyhow!("{e}"))?,
            path.clone(),
        )),
        None => None,
    };
    println!("iscsi listening on {}", exports.listen_address());
    if let Some(l) = &metrics_listener {
        println!("metrics listening on {}", l.local_addr()?);
    }
    if let Some((_, path)) = &csi_listener {
        println!("csi socket listening on {}", path.display());
    }
    println!("grpc listening on {addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, iscsi = %exports.listen_address(), advertised = %exports.portal(), data_dir = %config.data_dir.display(), repository = %config.repository_location()?, catalog = %svc.catalog().describe(), node = %svc.node_name(), "blockdelta serving");
    let api = Api::new(svc.clone(), exports, deltas, config.delta_enabled);
    // One signal stops both servers.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let metrics = metrics_listener.map(|listener| {
        tokio::spawn(blockdelta::api::metrics::serve_metrics(
            svc.clone(),
            listener,
            stopped(),
        ))
    });
    let csi = csi_listener.map(|(listener, path)| {
        tokio::spawn(blockdelta::api::serve_csi_socket(
            api.clone(),
            listener,
            path,
            stopped(),
        ))
    });
    let grpc = blockdelta::api::serve(api, listener, tls, stopped()).await;
    if let Some(csi) = csi {
        match csi.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "CSI socket server"),
            Err(e) => tracing::error!(error = %e, "CSI socket server task"),
        }
    }
    if let Some(metrics) = metrics
        && let Err(e) = metrics.await
    {
        tracing::error!(error = %e, "metrics server task");
    }
    grpc.map_err(|e| anyhow::anyhow!("gRPC server: {e}"))?;
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

/// The TLS configuration `tls_cert`/`tls_key` (and `tls_client_ca`) ask for, if any.
fn server_tls(config: &Config) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p).with_context(|| format!("reading {what} {}", p.display()))
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read(cert, "tls_cert")?,
        read(key, "tls_key")?,
    ));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca, "tls_client_ca")?));
    }
    Ok(Some(tls))
}

/// Secure defaults (DESIGN.md §10): gRPC off loopback needs TLS, iSCSI off loopback
/// needs CHAP, unless the operator says `--insecure-…`, which is logged.
fn refuse_insecure(
    grpc: std::net::SocketAddr,
    tls: bool,
    insecure_grpc: bool,
    iscsi: std::net::SocketAddr,
    chap: bool,
    insecure_iscsi: bool,
) -> anyhow::Result<()> {
    if !grpc.ip().is_loopback() && !tls {
        if !insecure_grpc {
            anyhow::bail!(
                "refusing to serve gRPC on {grpc} without TLS: tokens would cross the network in \
                 the clear. Give --tls-cert and --tls-key, listen on 127.0.0.1, or pass \
                 --insecure-grpc to accept the risk"
            );
        }
        tracing::warn!(%grpc, "--insecure-grpc: serving gRPC without TLS on a non-loopback address");
    }
    if !iscsi.ip().is_loopback() && !chap {
        if !insecure_iscsi {
            anyhow::bail!(
                "refusing to serve iSCSI on {iscsi} without CHAP: any host that reaches the port \
                 could log in to attached volumes. Set iscsi_chap = true (--iscsi-chap true), \
                 listen on 127.0.0.1, or pass --insecure-iscsi to accept the risk"
            );
        }
        tracing::warn!(%iscsi, "--insecure-iscsi: serving iSCSI without CHAP on a non-loopback address");
    }
    Ok(())
}
