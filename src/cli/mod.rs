//! The CLI's client side: each subcommand is one or a few RPCs of proto/, with
//! names that match them. Shared here: connecting, progress, error reporting.

pub mod backups;
pub mod changed;
pub mod output;
pub mod serve;
pub mod volumes;

use std::time::Duration;

use tonic::transport::Channel;

pub async fn connect(server: &str) -> anyhow::Result<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(server.to_string())
        .map_err(|e| tonic::Status::invalid_argument(format!("bad --server {server:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5));
    endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("cannot reach {server}: {e}")).into())
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
}

impl Progress {
    pub fn new() -> Progress {
        // SAFETY: isatty only inspects the descriptor.
        Progress {
            tty: unsafe { libc::isatty(2) } == 1,
            started: std::time::Instant::now(),
        }
    }

    pub fn show(&self, done: u64, total: u64) {
        if !self.tty || total == 0 {
            return;
        }
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
