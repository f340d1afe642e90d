//! `blockdelta`: the server (`blockdelta serve`) and a CLI that is a gRPC client
//! of it. Every client subcommand is one or a few RPCs of proto/; names match the
//! RPCs. The subcommands live in `cli/`.
//!
//! A failing call exits with status 1 and prints `error: CODE: message`, CODE
//! being the gRPC code name (INVALID_ARGUMENT, NOT_FOUND, ...).

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: catalog, repository, iSCSI target and gRPC (defaults need no arguments).
    Serve(ServeArgs),
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
    /// Rebuild missing catalog records from the repository alone.
    Recover {
        /// The server's repository folder (DATA_DIR/repository).
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
        Command::Serve(args) => return cli::serve::serve(args).await,
        client => client,
    };
    // A client's output may go to `head` or a closed pipe: end quietly, as Unix tools do,
    // instead of panicking in println!. (The server keeps ignoring SIGPIPE: its sockets.)
    // SAFETY: restoring the default disposition of a signal before any output.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let channel = cli::connect(&cli.server).await?;
    match command {
        Command::Serve(args) => cli::serve::serve(args).await,
        Command::Volume(cmd) => cli::volumes::run(channel, cmd, cli.json).await,
        Command::Backup(cmd) => cli::backups::run(channel, cmd, cli.json).await,
        Command::ChangedBlocks(args) => cli::changed::run(channel, args, cli.json).await,
        Command::Audit { id } => cli::volumes::audit(channel, id).await,
        Command::Gc => cli::backups::gc(channel, cli.json).await,
        Command::Recover { repository } => {
            cli::backups::recover(channel, repository, cli.json).await
        }
    }
}
