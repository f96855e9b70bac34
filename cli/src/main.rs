//! `chat`: a command-line client for scripts and bots, and a load
//! generator. It speaks the protocol through the `proto` client core, over
//! TCP or through the gateway's WebSocket.
//!
//! # Layout
//! - `transport`: TCP or WebSocket, the same byte stream either way.
//! - `session`: the tokio shell around `proto::Client`.
//! - `commands/`: one file per subcommand.
//! - `bench/`: the load scenarios and their figures.
#![forbid(unsafe_code)]
// A binary crate: `pub` items are visible to the crate only, as intended.
#![allow(unreachable_pub)]

mod bench;
mod commands;
mod session;
mod transport;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use proto::limits::{parse_seconds, MAX_SECONDS};

use session::Session;
use transport::Target;

/// A command-line chat client.
#[derive(Debug, Parser)]
#[command(name = "chat", version)]
struct Cli {
    /// The chat server, HOST:PORT.
    #[arg(
        long,
        env = "CHAT_SERVER",
        default_value = "127.0.0.1:7878",
        global = true
    )]
    server: String,
    /// Reach the server through a gateway instead, e.g. ws://127.0.0.1:8080/ws.
    #[arg(long, env = "CHAT_WS", global = true)]
    ws: Option<String>,
    /// Connect to --server with TLS (its --tls-cert), checking its
    /// certificate against the public authorities, or --ca.
    #[arg(long, env = "CHAT_TLS", global = true)]
    tls: bool,
    /// A PEM file of the certificates to trust for --tls (a private CA, or
    /// the server's own self-signed certificate). Implies --tls.
    #[arg(long, env = "CHAT_CA", global = true)]
    ca: Option<PathBuf>,
    /// Sign in with the password in this file (its first line), for a
    /// protected name; the CHAT_PASSWORD environment variable works too.
    /// Never on the command line, where others can read it.
    #[arg(long, env = "CHAT_PASSWORD_FILE", global = true)]
    password_file: Option<PathBuf>,
    /// The name to sign in with.
    #[arg(long, env = "CHAT_NAME", global = true)]
    name: Option<String>,
    /// Seconds to wait for an answer from the server.
    #[arg(long, env = "CHAT_TIMEOUT", default_value_t = 30.0, global = true, value_parser = parse_seconds)]
    timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the users online now.
    Users,
    /// Send a direct message to USER (a user number, or the name of an online user).
    Send {
        /// Recipient.
        user: String,
        /// The message.
        text: String,
    },
    /// Send a message to everyone online.
    Broadcast {
        /// The message.
        text: String,
    },
    /// Print incoming messages as they arrive, acknowledging each.
    Listen {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// List the shared files.
    Files,
    /// Upload a file.
    Upload {
        /// The file.
        path: PathBuf,
    },
    /// Download a file by number. An existing file is not overwritten
    /// without --force.
    Download {
        /// The file number.
        file: u64,
        /// Where to save it: a file, or a directory to save it in under its
        /// name (default: its name, in the current directory).
        path: Option<PathBuf>,
        /// Replace an existing file (once the download is complete).
        #[arg(long, env = "CHAT_DOWNLOAD_FORCE")]
        force: bool,
    },
    /// Set or change your password: reads the current one (empty for a
    /// name that has none yet) and the new one, from a prompt on a
    /// terminal or as two lines of standard input.
    Passwd,
    /// Run a load scenario and print its figures.
    Bench {
        /// The server's PID, for its memory and CPU figures (also accepted
        /// after the scenario's name).
        #[arg(long, env = "CHAT_BENCH_SERVER_PID", global = true)]
        server_pid: Option<u32>,
        /// Nodes of a cluster (HOST:PORT, comma-separated, plain TCP) to
        /// spread the sessions over instead of --server: a direct
        /// message's receiver is on the node after its sender's, and
        /// broadcast receivers go round the nodes.
        #[arg(long, value_delimiter = ',', global = true)]
        spread: Vec<String>,
        #[command(subcommand)]
        scenario: bench::Scenario,
    },
}

/// The password to sign in with: the first line of --password-file, or
/// CHAT_PASSWORD; none for an unprotected name.
fn password(file: Option<&std::path::Path>) -> Result<Option<String>, session::SessionError> {
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).map_err(session::SessionError::local("read", path))?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
    }
    Ok(std::env::var("CHAT_PASSWORD").ok())
}

/// Reads `chat passwd`'s two passwords: prompts on a terminal, else two
/// lines of standard input.
fn read_passwords() -> Result<(String, String), session::SessionError> {
    use std::io::{BufRead, IsTerminal};
    let io = |e| session::SessionError::Local {
        what: "read",
        path: "standard input".into(),
        source: e,
    };
    if std::io::stdin().is_terminal() {
        let old = rpassword::prompt_password("Current password (empty if none): ").map_err(io)?;
        let new = rpassword::prompt_password("New password: ").map_err(io)?;
        let again = rpassword::prompt_password("Again: ").map_err(io)?;
        if new != again {
            return Err(session::SessionError::Check(
                "the two new passwords differ".into(),
            ));
        }
        Ok((old, new))
    } else {
        let mut lines = std::io::stdin().lock().lines();
        let mut next = || lines.next().transpose().map(Option::unwrap_or_default);
        let old = next().map_err(io)?;
        let new = next().map_err(io)?;
        Ok((old, new))
    }
}

async fn run(cli: Cli) -> Result<(), session::SessionError> {
    let target = match (cli.ws, cli.tls || cli.ca.is_some()) {
        (Some(url), _) => Target::Ws(url),
        (None, true) => Target::Tls(
            cli.server,
            transport::Tls::new(cli.ca.as_deref()).map_err(session::SessionError::Connect)?,
        ),
        (None, false) => Target::Tcp(cli.server),
    };
    let patience = Duration::from_secs_f64(cli.timeout.max(0.1));
    if let Command::Bench {
        server_pid,
        spread,
        scenario,
    } = cli.command
    {
        let prefix = format!("bench{}", std::process::id());
        return bench::run(
            bench::Bench {
                target,
                spread: spread.into_iter().map(Target::Tcp).collect(),
                server_pid,
                patience,
                prefix,
            },
            scenario,
        )
        .await;
    }
    let Some(name) = cli.name else {
        return Err(session::SessionError::Server {
            code: proto::ErrorCode::InvalidName,
            text: "give a name with --name (or CHAT_NAME)".into(),
        });
    };
    let password = password(cli.password_file.as_deref())?;
    let passwords = match cli.command {
        Command::Passwd => Some(read_passwords()?),
        _ => None,
    };
    // Only `listen` acknowledges: other commands leave incoming messages
    // queued for the user's next listening session.
    let mut s = Session::open(
        &target,
        &name,
        password.as_deref(),
        Session::config(256, false),
        patience,
    )
    .await?;
    match cli.command {
        Command::Users => commands::users::run(&mut s).await?,
        Command::Send { user, text } => commands::send::direct(&mut s, &user, &text).await?,
        Command::Broadcast { text } => commands::send::broadcast(&mut s, &text).await?,
        Command::Listen { json, count } => commands::listen::run(&mut s, json, count).await?,
        Command::Files => commands::files::run(&mut s).await?,
        Command::Upload { path } => {
            commands::upload::run(&mut s, &path).await?;
        }
        Command::Download { file, path, force } => {
            commands::download::run(&mut s, file, path.as_deref(), force).await?;
        }
        Command::Passwd => {
            let (old, new) = passwords.unwrap_or_default();
            commands::passwd::run(&mut s, &old, &new).await?;
        }
        Command::Bench { .. } => {}
    }
    s.flush().await
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(args: &[&str]) -> bool {
        let mut argv = vec!["chat"];
        argv.extend_from_slice(args);
        matches!(
            Cli::try_parse_from(argv),
            Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation
        )
    }

    #[test]
    fn infinite_or_huge_durations_are_refused() {
        assert!(refused(&["--timeout", "inf", "users"]));
        assert!(refused(&["--timeout", "1e30", "users"]));
        assert!(refused(&["--timeout=-1", "users"]));
        assert!(refused(&["--timeout", "NaN", "users"]));
        assert!(refused(&["bench", "dm", "--seconds", "inf"]));
        assert!(refused(&["bench", "idle", "--hold", "1e300"]));
        assert!(Cli::try_parse_from(["chat", "--timeout", "0.5", "users"]).is_ok());
        assert!(refused(&["bench", "soak", "--seconds", "inf"]));
        assert!(refused(&["bench", "soak", "--minutes=-1"]));
        assert!(refused(&["bench", "soak", "--report-every", "0"]));
        assert!(refused(&["bench", "soak", "--minutes", "20000"]));
    }

    #[test]
    fn the_soak_takes_the_server_pid_after_its_name() {
        let soak = [
            "chat",
            "bench",
            "soak",
            "--minutes",
            "2",
            "--server-pid",
            "7",
        ];
        assert!(matches!(
            Cli::try_parse_from(soak).map(|c| c.command),
            Ok(Command::Bench {
                server_pid: Some(7),
                ..
            })
        ));
        assert!(
            Cli::try_parse_from(["chat", "bench", "soak", "--minutes", "1", "--seconds", "5"])
                .is_err()
        );
    }
}
