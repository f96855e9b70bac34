//! `chat-server`: runs the chat server until SIGINT or SIGTERM, manages
//! the accounts of its data directory (`chat-server account ...`), or
//! backs it up and restores it (`chat-server backup` / `restore`).

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use server::store::admin::Accounts;

/// The chat server: sessions, direct messages, broadcasts and shared files
/// over TCP, stored in SQLite under the data directory.
#[derive(Debug, Parser)]
#[command(name = "chat-server", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on for chat clients (TCP).
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:7878")]
    listen: std::net::SocketAddr,

    /// PEM certificate chain: clients connect with TLS (needs --tls-key).
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Proxies (CIDR, e.g. a gateway's `10.0.0.5/32`) whose connections
    /// start with a PROXY protocol v2 header naming the real client, which
    /// the per-address limits and the logs then see. A connection from
    /// such an address without the header is closed; from any other
    /// address the header is never read.
    #[arg(long, env = "CHAT_TRUSTED_PROXY", value_delimiter = ',')]
    trusted_proxy: Vec<ipnet::IpNet>,

    #[command(flatten)]
    observe: server::observe::ObserveArgs,

    #[command(flatten)]
    config: server::Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the names protected by a password, in --data-dir. Safe while
    /// the server runs: a change applies from the next sign-in.
    Account {
        #[command(subcommand)]
        action: AccountAction,
    },
    /// Writes a consistent backup of the data directory to one archive
    /// (tar), while the server keeps serving: a snapshot of the database
    /// and the body of every file complete in it. FILE appears only once
    /// complete (replacing one of that name), readable by its owner only.
    Backup {
        /// The data directory (default: the --data-dir before the
        /// subcommand, or CHAT_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The archive to write.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Restores an archive written by `backup` into a data directory that
    /// does not exist or is empty. Start the server on it afterwards.
    Restore {
        /// The archive to read.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The data directory to create or fill (default: as for `backup`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AccountAction {
    /// Protects NAME with a password read from standard input (a prompt on
    /// a terminal); the name is created if new.
    Add {
        /// The user name.
        name: String,
    },
    /// Sets a new password for NAME, read as for `add`.
    Reset {
        /// The user name.
        name: String,
    },
    /// Removes NAME's password; the name (its number, mail and files) stays.
    Remove {
        /// The user name.
        name: String,
    },
    /// Lists the protected names.
    List,
}

/// Reads a password: twice from a prompt on a terminal, else one line of
/// standard input. Never from an argument, where other users of the
/// machine could read it.
fn read_password(name: &str) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {name}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the two passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    proto::limits::validate_password(&password)?;
    Ok(password)
}

fn account(config: &server::Config, action: AccountAction) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    let mut accounts =
        Accounts::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    let hash = |name: &str| -> anyhow::Result<String> {
        proto::limits::validate_user_name(name)?;
        let password = read_password(name)?;
        Ok(config.hash_params().hash_now(&password)?)
    };
    match action {
        AccountAction::Add { name } => {
            let hash = hash(&name)?;
            if !accounts.add(&name, &hash)? {
                bail!("{name} already has a password; use `account reset`");
            }
            println!("{name} is protected by its password");
        }
        AccountAction::Reset { name } => {
            let hash = hash(&name)?;
            if !accounts.reset(&name, &hash)? {
                bail!("{name} has no password; use `account add`");
            }
            println!("{name} has a new password");
        }
        AccountAction::Remove { name } => {
            if !accounts.remove(&name)? {
                bail!("{name} has no password");
            }
            println!("{name} is no longer protected");
        }
        AccountAction::List => {
            for a in accounts.list()? {
                println!("{}\t{}", a.user, a.name);
            }
        }
    }
    Ok(())
}

fn backup(data_dir: &Path, to: &Path) -> anyhow::Result<()> {
    let done = server::backup::backup(data_dir, to).with_context(|| {
        format!(
            "backup of {} to {} failed",
            data_dir.display(),
            to.display()
        )
    })?;
    println!(
        "backed up {} to {}: database {} bytes, {} files ({} bytes)",
        data_dir.display(),
        to.display(),
        done.database_bytes,
        done.files,
        done.file_bytes
    );
    Ok(())
}

fn restore(from: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let done = server::backup::restore(from, data_dir).with_context(|| {
        format!(
            "restore of {} into {} failed",
            from.display(),
            data_dir.display()
        )
    })?;
    println!(
        "restored {} into {}: database {} bytes, {} files ({} bytes)",
        from.display(),
        data_dir.display(),
        done.database_bytes,
        done.files,
        done.file_bytes
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.observe.init_logging();
    let mut config = cli.config;
    if config.postgres.is_some() && cli.command.is_some() {
        // They work on a data directory's SQLite database.
        bail!("account, backup and restore work on --data-dir only, not yet with --postgres");
    }
    match cli.command {
        Some(Command::Account { action }) => return account(&config, action),
        Some(Command::Backup { data_dir, to }) => {
            return backup(&data_dir.unwrap_or(config.data_dir), &to)
        }
        Some(Command::Restore { from, data_dir }) => {
            return restore(&from, &data_dir.unwrap_or(config.data_dir))
        }
        None => {}
    }
    // The commands above run beside a server: no listener of their own.
    cli.observe.serve_metrics()?;
    config.listen = cli.listen;
    config.trusted_proxy = cli.trusted_proxy;
    config.tls = match (cli.tls_cert, cli.tls_key) {
        (Some(cert), Some(key)) => Some(server::config::TlsFiles { cert, key }),
        _ => None,
    };
    let running = server::start(config).await?;
    println!("chat-server listening on {}", running.local_addr());
    let token = running.shutdown_token();
    tokio::select! {
        _ = server::signal::shutdown_signal() => tracing::info!("signal received"),
        _ = token.cancelled() => {}
    }
    let fenced = running.fenced();
    running.shutdown().await;
    match fenced {
        // An error exit, so that a supervisor (systemd's Restart=on-failure)
        // starts the server again, as a new node.
        Some(why) => bail!("stopped serving: {why}"),
        None => Ok(()),
    }
}
