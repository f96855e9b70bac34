//! The tokio shell around the protocol core: feeds it bytes and time,
//! sends what it queues, and hands back its events one at a time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::{Client, ClientConfig, DecodeError, ErrorCode, Event};
use thiserror::Error;
use tokio::time::Instant;

use crate::transport::{Target, Transport};

/// Why a session could not go on.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The server could not be reached.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The connection failed.
    #[error("connection lost: {0}")]
    Io(std::io::Error),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// The server sent something that is not the protocol.
    #[error("the server sent bytes that are not the chat protocol: {0}")]
    Protocol(#[from] DecodeError),
    /// The server refused a request.
    #[error("{}", code.words(text))]
    Server {
        /// The code.
        code: ErrorCode,
        /// The server's words.
        text: String,
    },
    /// The client core refused an operation.
    #[error(transparent)]
    Client(#[from] proto::ClientError),
    /// Nothing happened in time.
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    /// The recipient of a direct message has a full mailbox.
    #[error("{0}'s mailbox is full; they need to read their messages before you can send more")]
    MailboxFull(String),
    /// A local file could not be read or written (not the server's fault).
    #[error("cannot {what} {}: {source}", path.display())]
    Local {
        /// What was being done: "create", "write", ...
        what: &'static str,
        /// The local file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A download would overwrite an existing file.
    #[error("{} already exists; give --force to overwrite it", .0.display())]
    Exists(PathBuf),
    /// A check of a load scenario failed (its summary says which).
    #[error("{0}")]
    Check(String),
}

impl SessionError {
    /// A local file error on `path`.
    pub fn local(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| SessionError::Local { what, path, source }
    }
}

/// A signed-in session over one transport.
pub struct Session {
    /// The protocol core.
    pub core: Client,
    transport: Transport,
    start: Instant,
    /// How long to wait for an answer before giving up.
    pub patience: Duration,
}

impl Session {
    /// Connects and signs in as `name`, with `password` if given.
    pub async fn open(
        target: &Target,
        name: &str,
        password: Option<&str>,
        config: ClientConfig,
        patience: Duration,
    ) -> Result<Self, SessionError> {
        let transport = Transport::connect(target)
            .await
            .map_err(SessionError::Connect)?;
        let mut s = Session {
            core: Client::new(config),
            transport,
            start: Instant::now(),
            patience,
        };
        match password {
            Some(password) => s.core.sign_in_with_password(name, password)?,
            None => s.core.sign_in(name)?,
        }
        let now = s.now();
        s.core.connected(now);
        loop {
            match s.next_event().await? {
                Event::SignedIn { .. } => return Ok(s),
                Event::SignInFailed { code, text } | Event::Disconnected { code, text } => {
                    return Err(SessionError::Server { code, text })
                }
                _ => {}
            }
        }
    }

    /// A client configuration whose message numbers do not repeat across runs.
    pub fn config(window: u32, acknowledge: bool) -> ClientConfig {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        ClientConfig {
            window,
            first_message_number: micros,
            acknowledge_incoming: acknowledge,
            ..ClientConfig::default()
        }
    }

    /// Time since the session started, the core's clock.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Sends everything the core has queued.
    pub async fn flush(&mut self) -> Result<(), SessionError> {
        while let Some(bytes) = self.core.poll_transmit() {
            self.transport.send(bytes).await.map_err(SessionError::Io)?;
        }
        Ok(())
    }

    /// The next event, waiting as long as it takes (keepalives go out meanwhile).
    ///
    /// What the core queues in answer to input (acknowledgements, the next
    /// chunk requests) is sent at once; what the caller queues while
    /// handling a run of events is sent before waiting, in one write.
    /// Callers that stop reading events call [`Session::flush`].
    pub async fn next_event(&mut self) -> Result<Event, SessionError> {
        loop {
            if let Some(e) = self.core.poll_event() {
                return Ok(e);
            }
            self.flush().await?;
            let wake = self
                .core
                .poll_timeout()
                .map(|t| self.start + t)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                received = self.transport.recv() => match received {
                    Ok(Some(bytes)) => {
                        let now = self.now();
                        self.core.handle_input(now, &bytes)?;
                        self.flush().await?;
                    }
                    Ok(None) => return Err(SessionError::Closed),
                    Err(e) => return Err(SessionError::Io(e)),
                },
                _ = tokio::time::sleep_until(wake) => {
                    let now = self.now();
                    self.core.handle_timeout(now);
                }
            }
        }
    }

    /// Sends keepalives until `until` without ever reading the socket: a
    /// client that has stopped reading. Ends early when a write fails.
    pub async fn keep_alive_unread(&mut self, until: Instant) -> Result<(), SessionError> {
        loop {
            self.flush().await?;
            let wake = self
                .core
                .poll_timeout()
                .map(|t| self.start + t)
                .unwrap_or(until)
                .min(until);
            tokio::time::sleep_until(wake).await;
            if Instant::now() >= until {
                return Ok(());
            }
            let now = self.now();
            self.core.handle_timeout(now);
        }
    }

    /// The next event, or [`SessionError::Timeout`] after `patience`.
    pub async fn expect_event(&mut self) -> Result<Event, SessionError> {
        // Most events are already waiting: no timer for those.
        if let Some(e) = self.core.poll_event() {
            return Ok(e);
        }
        match tokio::time::timeout(self.patience, self.next_event()).await {
            Ok(r) => r,
            Err(_) => Err(SessionError::Timeout(self.patience)),
        }
    }

    /// Waits for an event `pick` accepts; an error the server reports
    /// about something else ends the wait too.
    pub async fn wait_for<T>(
        &mut self,
        mut pick: impl FnMut(&mut Self, Event) -> Option<Result<T, SessionError>>,
    ) -> Result<T, SessionError> {
        loop {
            let event = self.expect_event().await?;
            if let Event::Disconnected { code, text } = &event {
                return Err(SessionError::Server {
                    code: *code,
                    text: text.clone(),
                });
            }
            if let Some(result) = pick(self, event) {
                return result;
            }
        }
    }

    /// The names of the users online now, by number.
    pub async fn online_users(&mut self) -> Result<Vec<(u64, String)>, SessionError> {
        self.core.request_users()?;
        let users = self
            .wait_for(|_, e| match e {
                Event::Users(u) => Some(Ok(u)),
                _ => None,
            })
            .await?;
        for &u in &users {
            self.core.request_user(u)?;
        }
        let mut named = Vec::new();
        while named.len() < users.len() {
            let (user, name) = self
                .wait_for(|_, e| match e {
                    Event::UserName { user, name } => Some(Ok((user, name))),
                    Event::ServerError { code, text, .. } => {
                        Some(Err(SessionError::Server { code, text }))
                    }
                    _ => None,
                })
                .await?;
            named.push((user, name));
        }
        named.sort();
        Ok(named)
    }
}
