//! Passwords in packets: kept out of `Debug` output, so a logged packet
//! never shows one.

/// A password as carried by ACCOUNT SIGN IN and PASSWORD CHANGE.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The password's text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its length in UTF-8 bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (PASSWORD CHANGE's old password, for a name
    /// that has none yet).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Password(<{} bytes>)", self.0.len())
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Self(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let p = Password::from("hunter2hunter2");
        assert_eq!(format!("{p:?}"), "Password(<14 bytes>)");
        assert_eq!(p.expose(), "hunter2hunter2");
    }
}
