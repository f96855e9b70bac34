//! The error codes carried by the ERROR packet (type 3).
//!
//! The numbers are part of the wire format and never change; new codes are
//! only ever appended. A code this build does not know decodes as
//! [`ErrorCode::Other`] so an older client still shows the server's text.

/// Why the server refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: the packet could not be parsed; the server closes the connection.
    Malformed,
    /// 2: the packet type is unknown; the server closes the connection.
    UnknownPacketType,
    /// 3: the session number is not this connection's live session, or it expired.
    BadSession,
    /// 4: a user or file name breaks the naming rules.
    InvalidName,
    /// 5: the user name already has a live session.
    NameInUse,
    /// 6: no user has that number.
    UnknownUser,
    /// 7: no complete file has that number.
    UnknownFile,
    /// 8: no transaction of this session has that number.
    UnknownTransaction,
    /// 9: a chunk number is out of range or a chunk has the wrong length.
    BadChunk,
    /// 10: a file is larger than allowed, or the storage quota is used up.
    TooLarge,
    /// 11: the session sends faster than its rate limit.
    RateLimited,
    /// 12: the server failed (for example its disk); the request may be retried.
    ServerError,
    /// 13: a packet that only the server sends, or a request out of order
    /// (for example a second SESSION REQUEST on a signed-in connection).
    UnexpectedPacket,
    /// 14: the session was resumed on another connection; this one closes.
    SessionMoved,
    /// 15: the server is shutting down; this connection closes.
    ShuttingDown,
    /// 16: the connection fell too far behind reading; it closes.
    SlowReader,
    /// 17: the recipient's mailbox holds as many unread messages or bytes
    /// as the server keeps for one user; the sender may retry later.
    MailboxFull,
    /// 18: the server's disk is nearly full; nothing was written.
    InsufficientStorage,
    /// 19: the connection did not sign in within the server's deadline; it closes.
    SignInTimeout,
    /// 20: this address has as many connections open as the server allows; it closes.
    TooManyConnections,
    /// 21: a limit of the whole server (open transfer files) is reached; retry later.
    Busy,
    /// 22: the name and password do not match an account (or, where only
    /// accounts may sign in, the name has none: the two are not told apart).
    BadCredentials,
    /// 23: the name is protected by a password: sign in with ACCOUNT SIGN IN.
    NameProtected,
    /// A code this build does not know.
    Other(u16),
}

impl ErrorCode {
    /// The code's number on the wire.
    pub fn to_u16(self) -> u16 {
        use ErrorCode::*;
        match self {
            Malformed => 1,
            UnknownPacketType => 2,
            BadSession => 3,
            InvalidName => 4,
            NameInUse => 5,
            UnknownUser => 6,
            UnknownFile => 7,
            UnknownTransaction => 8,
            BadChunk => 9,
            TooLarge => 10,
            RateLimited => 11,
            ServerError => 12,
            UnexpectedPacket => 13,
            SessionMoved => 14,
            ShuttingDown => 15,
            SlowReader => 16,
            MailboxFull => 17,
            InsufficientStorage => 18,
            SignInTimeout => 19,
            TooManyConnections => 20,
            Busy => 21,
            BadCredentials => 22,
            NameProtected => 23,
            Other(n) => n,
        }
    }

    /// The code for a number on the wire.
    pub fn from_u16(n: u16) -> Self {
        use ErrorCode::*;
        match n {
            1 => Malformed,
            2 => UnknownPacketType,
            3 => BadSession,
            4 => InvalidName,
            5 => NameInUse,
            6 => UnknownUser,
            7 => UnknownFile,
            8 => UnknownTransaction,
            9 => BadChunk,
            10 => TooLarge,
            11 => RateLimited,
            12 => ServerError,
            13 => UnexpectedPacket,
            14 => SessionMoved,
            15 => ShuttingDown,
            16 => SlowReader,
            17 => MailboxFull,
            18 => InsufficientStorage,
            19 => SignInTimeout,
            20 => TooManyConnections,
            21 => Busy,
            22 => BadCredentials,
            23 => NameProtected,
            n => Other(n),
        }
    }

    /// What the code means, in words a user can read.
    pub fn describe(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Malformed => "malformed packet",
            UnknownPacketType => "unknown packet type",
            BadSession => "bad or expired session",
            InvalidName => "invalid name",
            NameInUse => "name in use",
            UnknownUser => "unknown user",
            UnknownFile => "unknown file",
            UnknownTransaction => "unknown transaction",
            BadChunk => "bad chunk",
            TooLarge => "too large or over quota",
            RateLimited => "rate limited",
            ServerError => "server error",
            UnexpectedPacket => "unexpected packet",
            SessionMoved => "session moved to another connection",
            ShuttingDown => "server shutting down",
            SlowReader => "connection too slow to read",
            MailboxFull => "the recipient's mailbox is full",
            InsufficientStorage => "the server's disk is nearly full",
            SignInTimeout => "did not sign in in time",
            TooManyConnections => "too many connections from this address",
            Busy => "the server is busy",
            BadCredentials => "wrong name or password",
            NameProtected => "the name is protected by a password",
            Other(_) => "unknown error",
        }
    }

    /// A sentence for a person, saying what happened and what they can do,
    /// for the codes whose short [`describe`](Self::describe) would leave
    /// them guessing; `None` for the others, which clients show as the
    /// description followed by the server's text. Both clients (the web app
    /// and `chat`) use these words.
    pub fn sentence(self) -> Option<&'static str> {
        use ErrorCode::*;
        Some(match self {
            MailboxFull => {
                "the recipient's mailbox is full; they need to read their messages before you can send more"
            }
            InsufficientStorage => "the server's disk is almost full; nothing was saved",
            SignInTimeout => "the connection was closed because it did not sign in in time; try again",
            TooManyConnections => {
                "too many connections from your address; close some (other tabs or clients) and try again"
            }
            Busy => "the server is busy; try again in a moment",
            BadCredentials => "wrong name or password",
            NameProtected => "this name is protected by a password; enter it to sign in",
            _ => return None,
        })
    }

    /// What to show a person for this error: the [`sentence`](Self::sentence)
    /// when there is one, else the description and the server's `text`.
    pub fn words(self, text: &str) -> String {
        match self.sentence() {
            Some(s) => s.to_owned(),
            None if text.is_empty() => self.describe().to_owned(),
            None => format!("{}: {text}", self.describe()),
        }
    }

    /// Whether the server closes the connection after sending this error.
    pub fn closes_connection(self) -> bool {
        use ErrorCode::*;
        matches!(
            self,
            Malformed
                | UnknownPacketType
                | SessionMoved
                | ShuttingDown
                | SlowReader
                | SignInTimeout
                | TooManyConnections
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_round_trips() {
        for n in 0..=u16::MAX {
            assert_eq!(ErrorCode::from_u16(n).to_u16(), n);
        }
    }

    #[test]
    fn the_codes_a_person_can_act_on_have_sentences() {
        for n in 17..=21 {
            assert!(ErrorCode::from_u16(n).sentence().is_some(), "code {n}");
        }
        assert_eq!(
            ErrorCode::Busy.words("open files: 1024"),
            "the server is busy; try again in a moment"
        );
        assert_eq!(
            ErrorCode::UnknownUser.words("no user 9"),
            "unknown user: no user 9"
        );
    }
}
