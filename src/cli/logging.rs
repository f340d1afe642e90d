//! The server's log: text (no colour codes unless stderr is a terminal) or JSON lines, to
//! stderr or a file, filtered by `RUST_LOG` (`info` by default; e.g.
//! `RUST_LOG=info,blockdelta::api=debug` adds a line per call). Every line logged while a
//! request is served carries its `request_id` (the `request` span the auth layer opens).

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

fn install<W>(format: LogFormat, ansi: bool, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        // Each line: its own fields at the top, the request's under "span" (request_id,
        // method).
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Sets up the log for the server's life.
pub fn init(format: LogFormat, file: Option<&Path>) -> anyhow::Result<()> {
    match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the log file {}", path.display()))?;
            install(format, false, Mutex::new(f));
        }
        None => {
            // SAFETY: isatty only inspects the descriptor.
            let tty = unsafe { libc::isatty(2) } == 1;
            install(format, tty, std::io::stderr);
        }
    }
    Ok(())
}
