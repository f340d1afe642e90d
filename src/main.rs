//! `blockdelta`: the server (`blockdelta serve`) and a CLI that is a gRPC client
//! of it. Every client subcommand is one or a few RPCs of proto/; names match the
//! RPCs. The subcommands live in `cli/`.
//!
//! A failing call exits with status 1 and prints `error: CODE: message`, CODE
//! being the gRPC code name (INVALID_ARGUMENT, NOT_FOUND, ...).

/// `print!` / `println!` for the client's output. Output may go to `head` or a closed pipe:
/// then the command ends quietly (status 0), as Unix tools do, instead of panicking. SIGPIPE
/// stays ignored, so a server closing its socket is an error the CLI reports, not a silent
/// death by signal.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::stdout_result(write!(std::io::stdout(), $($arg)*));
    }};
}
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::stdout_result(writeln!(std::io::stdout(), $($arg)*));
    }};
}

/// What a failed write to stdout means: a closed pipe ends the command quietly; anything
/// else (a full disk under a redirect) is an error.
fn stdout_result(r: std::io::Result<()>) {
    match r {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            std::process::exit(1);
        }
    }
}

mod cli;

use clap::{Parser, Subcommand};

use cli::backups::BackupCommand;
use cli::changed::ChangedBlocksArgs;
use cli::serve::ServeArgs;
use cli::volumes::VolumeCommand;

#[derive(Parser)]
#[command(
    name = "blockdelta",
    version,
    about = "Block-volume backups with exact 4 KiB change bitmaps, delta volumes and a built-in iSCSI target"
)]
struct Cli {
    /// gRPC address of the server, for client commands.
    #[arg(
        long,
        global = true,
        env = "BLOCKDELTA_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Print one JSON object per record instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Bearer token [default: ./blockdelta-data/admin.token when it exists].
    #[arg(long, global = true, env = "BLOCKDELTA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Act for this project (admins only).
    #[arg(
        long = "project",
        global = true,
        env = "BLOCKDELTA_PROJECT",
        value_name = "NAME"
    )]
    acting_for: Option<String>,
    /// PEM CA that signed the server's certificate, for `--server https://…`.
    #[arg(long, global = true, env = "BLOCKDELTA_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    /// PEM client certificate, when the server requires one (mutual TLS).
    #[arg(long, global = true, env = "BLOCKDELTA_CLIENT_CERT")]
    client_cert: Option<std::path::PathBuf>,
    /// PEM key of --client-cert.
    #[arg(long, global = true, env = "BLOCKDELTA_CLIENT_KEY")]
    client_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: catalog, repository, iSCSI target and gRPC (defaults need no arguments).
    Serve(Box<ServeArgs>),
    /// Managed, registered and delta volumes; attach and detach.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Full and incremental backups, restore, verify.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// The blocks that changed between two backups of one chain (metadata only).
    ChangedBlocks(ChangedBlocksArgs),
    /// The audit log: one JSON object per volume or backup action.
    Audit {
        /// Only events about this volume or backup id.
        #[arg(long)]
        id: Option<String>,
    },
    /// Remove repository packs that no backup references.
    Gc,
    /// Backup policies: schedules, retention by merging, copies; assign them to volumes.
    #[command(subcommand)]
    Policy(cli::policies::PolicyCommand),
    /// What happened since a time: per volume its backups (duration, sizes, throughput),
    /// per policy its runs, totals, repository space (the LVM script's mail).
    Report {
        /// How far back: a number and s, m, h or d.
        #[arg(long, default_value = "24h")]
        since: String,
    },
    /// The nodes sharing this catalog (cinder's `volume service list`).
    #[command(subcommand)]
    Service(cli::cluster::ServiceCommand),
    /// Projects (admins create and delete them).
    #[command(subcommand)]
    Project(cli::identity::ProjectCommand),
    /// Bearer tokens: create (the secret is shown once), list, revoke.
    #[command(subcommand)]
    Token(cli::identity::TokenCommand),
    /// Per-project limits (cinder's names): show, set, defaults.
    #[command(subcommand)]
    Quota(cli::identity::QuotaCommand),
    /// The token's id, project and role.
    Whoami,
    /// Shell completions on stdout: bash, zsh, fish, elvish, powershell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The man page (roff) on stdout: `blockdelta manpage > blockdelta.1`.
    Manpage,
    /// Copy a whole repository to another (a directory or s3://BUCKET/PREFIX): runs on
    /// the repositories directly, not through a server.
    #[command(subcommand)]
    Repository(cli::repository::RepositoryCommand),
    /// The changed extents of an attached delta volume, as Oracle documents (GET LBA
    /// STATUS(32) in scans of at most 1 GiB), listed, read into a sparse image or streamed.
    Scan(Box<cli::scan::ScanArgs>),
    /// Rebuild missing catalog records from the repository alone.
    Recover {
        /// The server's repository (a folder or s3://BUCKET/PREFIX) [default: the one it
        /// is configured with].
        #[arg(long)]
        repository: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(st) => eprintln!("error: {}: {}", cli::code_name(st.code()), st.message()),
                None => eprintln!("error: {e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command {
        Command::Serve(args) => return cli::serve::serve(*args).await,
        Command::Repository(cmd) => return cli::repository::run(cmd, cli.json).await,
        Command::Scan(args) if !args.verifies() => {
            return cli::scan::run(*args, None, cli.json).await;
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "blockdelta", &mut std::io::stdout());
            return Ok(());
        }
        Command::Manpage => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            return Ok(());
        }
        client => client,
    };
    let tls = cli::ClientTls {
        ca_cert: cli.ca_cert,
        client_cert: cli.client_cert,
        client_key: cli.client_key,
    };
    let credentials = cli::Credentials::new(cli.token, cli.acting_for.clone())?;
    let channel = cli::connect(&cli.server, &tls, credentials.clone()).await?;
    match command {
        Command::Serve(args) => cli::serve::serve(*args).await,
        Command::Volume(cmd) => {
            let channel = match cmd.node() {
                Some(node) => {
                    cli::cluster::channel_to_node(channel, node, &tls, credentials).await?
                }
                None => channel,
            };
            cli::volumes::run(channel, cmd, cli.json).await
        }
        Command::Service(cmd) => cli::cluster::run(channel, cmd, cli.json).await,
        Command::Policy(cmd) => cli::policies::run(channel, cmd, cli.json).await,
        Command::Report { since } => cli::report::run(channel, since, cli.json).await,
        Command::Backup(cmd) => cli::backups::run(channel, cmd, cli.json).await,
        Command::ChangedBlocks(args) => cli::changed::run(channel, args, cli.json).await,
        Command::Audit { id } => cli::volumes::audit(channel, id).await,
        Command::Gc => cli::backups::gc(channel, cli.json).await,
        Command::Project(cmd) => cli::identity::project(channel, cmd, cli.json).await,
        Command::Token(cmd) => cli::identity::token(channel, cmd, cli.acting_for, cli.json).await,
        Command::Quota(cmd) => cli::identity::quota(channel, cmd, cli.json).await,
        Command::Whoami => cli::identity::whoami(channel, cli.json).await,
        Command::Completions { .. } | Command::Manpage | Command::Repository(_) => {
            unreachable!("answered above")
        }
        Command::Scan(args) => cli::scan::run(*args, Some(channel), cli.json).await,
        Command::Recover { repository } => {
            cli::backups::recover(channel, repository, cli.json).await
        }
    }
}
