//! The server's one configuration struct. Precedence, lowest first: embedded
//! defaults, a TOML config file (`--config FILE` / `BLOCKDELTA_CONFIG`), then
//! environment variables and flags (clap reads `BLOCKDELTA_*` for each flag).
//!
//! ```toml
//! data_dir = "/var/lib/blockdelta"
//! grpc_listen = "127.0.0.1:50051"
//! iscsi_listen = "127.0.0.1:3260"
//! iscsi_advertise = "203.0.113.7:3260"   # what discovery and attachments tell hosts
//! iscsi_iqn_prefix = "iqn.2026-11.io.blockdelta"
//! iscsi_chap = false      # true: every attachment requires CHAP
//! iscsi_discovery_chap_user = "disc"      # with the secret: SendTargets needs CHAP
//! iscsi_discovery_chap_secret = "…"
//! delta_enabled = true    # false: CreateVolume from two backups answers NOT_FOUND
//! volume_roots = ["/srv/volumes", "/dev/disk/by-id"]   # where admins may register host paths
//! tls_cert = "/etc/blockdelta/server.pem"   # with tls_key: gRPC over TLS
//! tls_key = "/etc/blockdelta/server.key"
//! tls_client_ca = "/etc/blockdelta/clients-ca.pem"   # clients must present a certificate
//! repository = "s3://backups/blockdelta"   # default: DATA_DIR/repository
//! s3_endpoint = "http://127.0.0.1:8333"   # path-style requests (SeaweedFS, Ceph RGW, MinIO)
//! s3_region = "us-east-1"
//! s3_access_key_id = "…"        # or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
//! s3_secret_access_key = "…"
//! catalog = "postgres://blockdelta@db:5432/blockdelta"   # default "sqlite": DATA_DIR/catalog.sqlite
//! node_name = "backup-1"    # default: the host name; unique among nodes sharing a catalog
//! lease_seconds = 30        # a dead node's jobs are failed by the others after this long
//! gc_clock_skew_seconds = 300   # gc spares packs this much older than a running backup
//! write_tracking_window_ms = 1000   # written blocks reach the dirty bitmap's file this soon
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::repo::S3Settings;
use crate::repo::store::RepositoryLocation;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Catalog (`catalog.sqlite`), repository (`repository/`) and managed volumes (`volumes/`).
    pub data_dir: PathBuf,
    /// gRPC listen address; port 0 picks a free port (the bound address is printed).
    pub grpc_listen: String,
    /// iSCSI target listen address; port 0 picks a free port (the bound
    /// address is printed and returned with every attachment).
    pub iscsi_listen: String,
    /// `HOST:PORT` (or `HOST`, with the listen port) that SendTargets and AttachVolume hand
    /// to hosts: behind NAT, in a container or on a wildcard listen address the host must be
    /// told an address it can reach. `None`: the listen address.
    pub iscsi_advertise: Option<String>,
    /// Attached volumes are exported as `<prefix>:<volume id>`.
    pub iscsi_iqn_prefix: String,
    /// Every attachment requires CHAP, whatever the request says.
    pub iscsi_chap: bool,
    /// CHAP user a discovery session must log in with (with the secret below); unset, any
    /// host may ask which targets it may log in to.
    pub iscsi_discovery_chap_user: Option<String>,
    pub iscsi_discovery_chap_secret: Option<String>,
    /// Delta volumes may be created (Oracle's per-project feature switch): the default
    /// of every project that has no setting of its own.
    pub delta_enabled: bool,
    /// The only places host paths may be registered or restored onto (checked after
    /// canonicalisation). Empty: no host path at all.
    pub volume_roots: Vec<PathBuf>,
    /// PEM certificate chain and key: gRPC over TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: clients must present a certificate it signed (mutual TLS).
    pub tls_client_ca: Option<PathBuf>,
    /// Where backups are kept: a local directory or `s3://BUCKET/PREFIX`. `None`: the
    /// `repository/` folder of `data_dir`.
    pub repository: Option<String>,
    /// The S3 endpoint (`http(s)://host:port`) for an `s3://` repository; `None`: AWS.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// S3 credentials; unset, `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` are used.
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    /// `sqlite` (embedded, one server) or `postgres://…` (shared by a cluster's nodes).
    pub catalog: String,
    /// This node's name in the cluster; `None`: the host name.
    pub node_name: Option<String>,
    /// How long a node's jobs outlive its last heartbeat.
    pub lease_seconds: u64,
    /// How far apart the clocks of nodes and object store may be.
    pub gc_clock_skew_seconds: u64,
    /// How long a block written through the target may be tracked only in memory when
    /// the host asks for no durability (FUA and SYNCHRONIZE CACHE make it durable at once).
    pub write_tracking_window_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./blockdelta-data"),
            grpc_listen: "127.0.0.1:50051".into(),
            iscsi_listen: "127.0.0.1:3260".into(),
            iscsi_advertise: None,
            iscsi_iqn_prefix: "iqn.2026-11.io.blockdelta".into(),
            iscsi_chap: false,
            iscsi_discovery_chap_user: None,
            iscsi_discovery_chap_secret: None,
            delta_enabled: true,
            volume_roots: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            repository: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            catalog: "sqlite".into(),
            node_name: None,
            lease_seconds: crate::engine::DEFAULT_LEASE.as_secs(),
            gc_clock_skew_seconds: crate::repo::CLOCK_SKEW.as_secs(),
            write_tracking_window_ms: crate::tracking::DEFAULT_WINDOW.as_millis() as u64,
        }
    }
}

/// Values given on the command line or in the environment; `None` = not given.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub grpc_listen: Option<String>,
    pub iscsi_listen: Option<String>,
    pub iscsi_advertise: Option<String>,
    pub iscsi_chap: Option<bool>,
    pub iscsi_discovery_chap_user: Option<String>,
    pub iscsi_discovery_chap_secret: Option<String>,
    pub delta_enabled: Option<bool>,
    /// Replaces the file's list when not empty.
    pub volume_roots: Vec<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub repository: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub catalog: Option<String>,
    pub node_name: Option<String>,
    pub lease_seconds: Option<u64>,
    pub gc_clock_skew_seconds: Option<u64>,
    pub write_tracking_window_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is in the message, and not a `#[source]` too: printed with its causes
    // (`{:#}`), it would say the same thing twice (thiserror takes a field named `source`
    // for one, hence `cause`).
    #[error("config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                    path: path.to_path_buf(),
                    cause,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        if let Some(d) = overrides.data_dir {
            config.data_dir = d;
        }
        if let Some(g) = overrides.grpc_listen {
            config.grpc_listen = g;
        }
        if let Some(i) = overrides.iscsi_listen {
            config.iscsi_listen = i;
        }
        if let Some(a) = overrides.iscsi_advertise {
            config.iscsi_advertise = Some(a);
        }
        if let Some(c) = overrides.iscsi_chap {
            config.iscsi_chap = c;
        }
        if let Some(u) = overrides.iscsi_discovery_chap_user {
            config.iscsi_discovery_chap_user = Some(u);
        }
        if let Some(s) = overrides.iscsi_discovery_chap_secret {
            config.iscsi_discovery_chap_secret = Some(s);
        }
        if let Some(d) = overrides.delta_enabled {
            config.delta_enabled = d;
        }
        if !overrides.volume_roots.is_empty() {
            config.volume_roots = overrides.volume_roots;
        }
        if let Some(c) = overrides.tls_cert {
            config.tls_cert = Some(c);
        }
        if let Some(k) = overrides.tls_key {
            config.tls_key = Some(k);
        }
        if let Some(c) = overrides.tls_client_ca {
            config.tls_client_ca = Some(c);
        }
        if let Some(r) = overrides.repository {
            config.repository = Some(r);
        }
        if let Some(e) = overrides.s3_endpoint {
            config.s3_endpoint = Some(e);
        }
        if let Some(r) = overrides.s3_region {
            config.s3_region = Some(r);
        }
        if let Some(c) = overrides.catalog {
            config.catalog = c;
        }
        if let Some(n) = overrides.node_name {
            config.node_name = Some(n);
        }
        if let Some(l) = overrides.lease_seconds {
            config.lease_seconds = l;
        }
        if let Some(k) = overrides.gc_clock_skew_seconds {
            config.gc_clock_skew_seconds = k;
        }
        if let Some(w) = overrides.write_tracking_window_ms {
            config.write_tracking_window_ms = w;
        }
        if config.write_tracking_window_ms == 0 {
            return Err(ConfigError::Invalid(
                "write_tracking_window_ms must be at least 1".into(),
            ));
        }
        config.repository_location()?;
        config.cluster()?;
        match (&config.tls_cert, &config.tls_key, &config.tls_client_ca) {
            (Some(_), Some(_), _) | (None, None, None) => {}
            (None, None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "tls_client_ca needs tls_cert and tls_key (mutual TLS is TLS first)".into(),
                ));
            }
            _ => {
                return Err(ConfigError::Invalid(
                    "tls_cert and tls_key go together".into(),
                ));
            }
        }
        if let Some(relative) = config.volume_roots.iter().find(|r| !r.is_absolute()) {
            return Err(ConfigError::Invalid(format!(
                "volume_roots entry {} must be an absolute path",
                relative.display()
            )));
        }
        if !target_emulator::target::valid_name(&format!("{}:vol-0", config.iscsi_iqn_prefix)) {
            return Err(ConfigError::Invalid(format!(
                "iscsi_iqn_prefix {:?} does not make iSCSI names (iqn. and lower case)",
                config.iscsi_iqn_prefix
            )));
        }
        if let Some(a) = &config.iscsi_advertise {
            target_emulator::target::advertised_address(a, 3260).map_err(ConfigError::Invalid)?;
        }
        match (
            &config.iscsi_discovery_chap_user,
            &config.iscsi_discovery_chap_secret,
        ) {
            (None, None) => {}
            (Some(u), Some(s)) if !u.is_empty() && s.len() >= 12 => {}
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "iscsi_discovery_chap_user must not be empty and iscsi_discovery_chap_secret \
                     must have at least 12 characters (initiators refuse shorter CHAP secrets)"
                        .into(),
                ));
            }
            _ => {
                return Err(ConfigError::Invalid(
                    "iscsi_discovery_chap_user and iscsi_discovery_chap_secret go together".into(),
                ));
            }
        }
        Ok(config)
    }

    /// The repository's location: `repository`, or `DATA_DIR/repository`.
    pub fn repository_location(&self) -> Result<RepositoryLocation, ConfigError> {
        match &self.repository {
            None => Ok(RepositoryLocation::Local(self.data_dir.join("repository"))),
            Some(text) => RepositoryLocation::parse(text).map_err(ConfigError::Invalid),
        }
    }

    /// The catalog, this node's name and its lease.
    pub fn cluster(&self) -> Result<crate::engine::ClusterSettings, ConfigError> {
        let catalog =
            crate::catalog::CatalogLocation::parse(&self.catalog).map_err(ConfigError::Invalid)?;
        let node_name = self
            .node_name
            .clone()
            .unwrap_or_else(crate::engine::default_node_name);
        crate::engine::check_node_name(&node_name).map_err(ConfigError::Invalid)?;
        if !(1..=3600).contains(&self.lease_seconds) {
            return Err(ConfigError::Invalid(format!(
                "lease_seconds {} must be from 1 to 3600",
                self.lease_seconds
            )));
        }
        Ok(crate::engine::ClusterSettings {
            catalog,
            node_name,
            lease: std::time::Duration::from_secs(self.lease_seconds),
            clock_skew: std::time::Duration::from_secs(self.gc_clock_skew_seconds),
        })
    }

    /// How to reach an `s3://` repository (credentials included; never printed).
    pub fn s3_settings(&self) -> S3Settings {
        S3Settings {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
        }
    }

    /// Discovery CHAP credentials, when configured.
    pub fn discovery_chap(&self) -> Option<(String, String)> {
        self.iscsi_discovery_chap_user
            .clone()
            .zip(self.iscsi_discovery_chap_secret.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "data_dir = \"/srv/bd\"\ngrpc_listen = \"127.0.0.1:6000\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&path),
            Overrides {
                grpc_listen: Some("127.0.0.1:7000".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/bd"));
        assert_eq!(c.grpc_listen, "127.0.0.1:7000");
        assert_eq!(c.iscsi_listen, "127.0.0.1:3260");
        std::fs::write(&path, "bogus = 1\n").unwrap();
        assert!(Config::load(Some(&path), Overrides::default()).is_err());
        assert_eq!(
            Config::load(None, Overrides::default()).unwrap(),
            Config::default()
        );
    }

    /// dist/blockdelta.toml names every key with its default: it loads, and equals them.
    #[test]
    fn the_sample_config_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/blockdelta.toml");
        assert_eq!(
            Config::load(Some(&path), Overrides::default()).unwrap(),
            Config::default()
        );
        // Every key of the struct appears in it, set or commented out.
        let text = std::fs::read_to_string(&path).unwrap();
        let keys = toml::Value::try_from(Config {
            iscsi_advertise: Some(String::new()),
            iscsi_discovery_chap_user: Some(String::new()),
            iscsi_discovery_chap_secret: Some(String::new()),
            tls_cert: Some(PathBuf::new()),
            tls_key: Some(PathBuf::new()),
            tls_client_ca: Some(PathBuf::new()),
            repository: Some(String::new()),
            s3_endpoint: Some(String::new()),
            s3_region: Some(String::new()),
            s3_access_key_id: Some(String::new()),
            s3_secret_access_key: Some(String::new()),
            node_name: Some(String::new()),
            ..Config::default()
        })
        .unwrap();
        for key in keys.as_table().unwrap().keys() {
            assert!(
                text.contains(&format!("{key} = ")),
                "dist/blockdelta.toml lacks {key}"
            );
        }
    }

    #[test]
    fn advertised_portal_and_discovery_chap_are_checked() {
        let with = |o: Overrides| Config::load(None, o);
        let c = with(Overrides {
            iscsi_advertise: Some("10.0.2.2:3260".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.iscsi_advertise.as_deref(), Some("10.0.2.2:3260"));
        assert!(
            with(Overrides {
                iscsi_advertise: Some("10.0.2.2:port".into()),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            with(Overrides {
                iscsi_discovery_chap_user: Some("disc".into()),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            with(Overrides {
                iscsi_discovery_chap_user: Some("disc".into()),
                iscsi_discovery_chap_secret: Some("short".into()),
                ..Default::default()
            })
            .is_err()
        );
        let c = with(Overrides {
            iscsi_discovery_chap_user: Some("disc".into()),
            iscsi_discovery_chap_secret: Some("twelve-chars".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.discovery_chap(),
            Some(("disc".into(), "twelve-chars".into()))
        );
    }
}
