//! The CLI's client side: each subcommand is one or a few RPCs of proto/, with
//! names that match them. Shared here: connecting, progress, error reporting.

pub mod backups;
pub mod changed;
pub mod cluster;
pub mod identity;
pub mod logging;
pub mod output;
pub mod policies;
pub mod report;
pub mod repository;
pub mod scan;
pub mod serve;
pub mod volumes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A connection to the server that carries the caller's token (and the project an admin
/// acts for) on every call.
pub type Channel = InterceptedService<tonic::transport::Channel, Credentials>;

/// What every call sends: `authorization: Bearer …` and `x-blockdelta-project`.
#[derive(Clone, Default)]
pub struct Credentials {
    authorization: Option<AsciiMetadataValue>,
    project: Option<AsciiMetadataValue>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(a) = &self.authorization {
            req.metadata_mut().insert("authorization", a.clone());
        }
        if let Some(p) = &self.project {
            req.metadata_mut()
                .insert(blockdelta::api::auth::PROJECT_HEADER, p.clone());
        }
        Ok(req)
    }
}

/// The admin token the first `serve` on the default data dir writes; the CLI's last
/// resort after `--token` and `BLOCKDELTA_TOKEN`, so a fresh machine needs no flag.
const DEFAULT_TOKEN_FILE: &str = "./blockdelta-data/admin.token";

impl Credentials {
    /// `--token` / `BLOCKDELTA_TOKEN` (clap reads both), else the default data dir's
    /// admin token when it exists; `--project` for an admin acting for a project.
    pub fn new(token: Option<String>, project: Option<String>) -> anyhow::Result<Credentials> {
        let token = match token {
            Some(t) => Some(t),
            None => read_token_file(Path::new(DEFAULT_TOKEN_FILE))?,
        };
        let value = |text: String, what: &str| -> anyhow::Result<AsciiMetadataValue> {
            MetadataValue::try_from(text).with_context(|| format!("{what} is not plain ASCII text"))
        };
        Ok(Credentials {
            authorization: token
                .map(|t| value(format!("Bearer {}", t.trim()), "the token"))
                .transpose()?,
            project: project.map(|p| value(p, "--project")).transpose()?,
        })
    }
}

fn read_token_file(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading the admin token {}", path.display())),
    }
}

/// TLS for `https://` servers: a CA to trust (else the system's roots are not used:
/// `--ca-cert` is required) and, for mutual TLS, a client certificate and key.
#[derive(Clone, Default)]
pub struct ClientTls {
    pub ca_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// `--server` as an endpoint: `host:port` without a scheme means `http://` (or
/// `https://` when `--ca-cert` is given).
fn server_url(server: &str, tls: &ClientTls) -> String {
    if server.contains("://") {
        server.to_string()
    } else if tls.ca_cert.is_some() {
        format!("https://{server}")
    } else {
        format!("http://{server}")
    }
}

pub async fn connect(
    server: &str,
    tls: &ClientTls,
    credentials: Credentials,
) -> anyhow::Result<Channel> {
    let url = server_url(server, tls);
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| tonic::Status::invalid_argument(format!("bad --server {server:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5));
    if url.starts_with("https://") {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).with_context(|| format!("reading {what} {}", p.display()))
        };
        let Some(ca) = &tls.ca_cert else {
            anyhow::bail!(
                "{url} is TLS: give --ca-cert FILE (or BLOCKDELTA_CA_CERT), the CA that signed the server's certificate"
            );
        };
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "--ca-cert")?));
        match (&tls.client_cert, &tls.client_key) {
            (Some(c), Some(k)) => {
                config = config.identity(Identity::from_pem(
                    read(c, "--client-cert")?,
                    read(k, "--client-key")?,
                ));
            }
            (None, None) => {}
            _ => anyhow::bail!("--client-cert and --client-key go together"),
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| tonic::Status::invalid_argument(format!("TLS for {url}: {e}")))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        tonic::Status::unavailable(format!("cannot reach {url}: {}", error_chain(&e)))
    })?;
    Ok(InterceptedService::new(channel, credentials))
}

/// An error with its causes, `a: b: c`: a transport error alone says only "transport error".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut last = out.clone();
    let mut cause = e.source();
    while let Some(c) = cause {
        // Layers often repeat their cause's words ("tcp connect error: tcp connect error").
        let text = c.to_string();
        if text != last {
            out.push_str(&format!(": {text}"));
        }
        last = text;
        cause = c.source();
    }
    out
}

/// The gRPC code's canonical name, as a failing command prints it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
pub struct Progress {
    tty: bool,
    started: std::time::Instant,
    /// When the bar was last drawn: it is redrawn at most ten times a second, so a job
    /// that reports every few KiB does not spend its time (or a slow console's) drawing.
    drawn: std::cell::Cell<Option<std::time::Instant>>,
}

impl Progress {
    pub fn new() -> Progress {
        // SAFETY: isatty only inspects the descriptor.
        Progress {
            tty: unsafe { libc::isatty(2) } == 1,
            started: std::time::Instant::now(),
            drawn: std::cell::Cell::new(None),
        }
    }

    pub fn show(&self, done: u64, total: u64) {
        if !self.tty || total == 0 {
            return;
        }
        let now = std::time::Instant::now();
        let recent = self
            .drawn
            .get()
            .is_some_and(|at| now.duration_since(at) < std::time::Duration::from_millis(100));
        if recent && done < total {
            return;
        }
        self.drawn.set(Some(now));
        eprint!(
            "\r{}   ",
            progress_line(done, total, self.started.elapsed())
        );
    }

    pub fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// `[####      ]  40% 400 MiB / 1.0 GiB  120 MiB/s  ETA 5s`: bytes against the bytes the
/// job has to move (the server counts a backup's data, not the volume's size).
fn progress_line(done: u64, total: u64, elapsed: std::time::Duration) -> String {
    let done = done.min(total);
    let pct = (done as f64 / total as f64 * 100.0) as usize;
    let filled = pct * 30 / 100;
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.5 { done as f64 / secs } else { 0.0 };
    let eta = if rate > 0.0 && done < total {
        format!("  ETA {}s", ((total - done) as f64 / rate).ceil() as u64)
    } else {
        String::new()
    };
    let speed = if rate > 0.0 {
        format!("  {}/s", output::human(rate as u64))
    } else {
        String::new()
    };
    format!(
        "[{}{}] {pct:3}% {} / {}{speed}{eta}",
        "#".repeat(filled),
        " ".repeat(30 - filled),
        output::human(done),
        output::human(total)
    )
}

/// Sizes: bytes, or with a K/M/G/T/P suffix (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("size {s:?} must be a whole number with an optional K/M/G/T suffix")
    })?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        "t" | "tib" | "tb" => 40,
        "p" | "pib" | "pb" => 50,
        other => return Err(format!("unknown size unit {other:?} (use K, M, G, T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_shows_rate_and_eta() {
        let line = progress_line(50 << 20, 100 << 20, std::time::Duration::from_secs(1));
        assert!(line.contains(" 50%"), "{line}");
        assert!(line.contains("/s") && line.contains("ETA 1s"), "{line}");
        let done = progress_line(100 << 20, 100 << 20, std::time::Duration::from_secs(2));
        assert!(done.contains("100%") && !done.contains("ETA"), "{done}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("64T"), Ok(64 << 40));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999T").is_err());
    }
}
