//! The protocol's fixed limits and the naming rules every side checks.

use thiserror::Error;

/// Every file chunk holds this many bytes, except the last of a file.
pub const CHUNK_SIZE: usize = 256;
/// The longest user name, in UTF-8 bytes.
pub const MAX_USER_NAME: usize = 64;
/// The longest file name, in UTF-8 bytes.
pub const MAX_FILE_NAME: usize = 255;
/// The largest file the 4-byte size field can describe.
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64;
/// Bit 63 of a delivered message number marks a broadcast.
pub const BROADCAST_BIT: u64 = 1 << 63;

/// How many chunks a file of `size` bytes has: `ceil(size / 256)`.
pub fn chunk_count(size: u32) -> u32 {
    size.div_ceil(CHUNK_SIZE as u32)
}

/// The exact length chunk `chunk` of a file of `size` bytes must have, or
/// `None` when the file has no such chunk.
pub fn chunk_len(size: u32, chunk: u32) -> Option<usize> {
    let start = u64::from(chunk) * CHUNK_SIZE as u64;
    let size = u64::from(size);
    if start >= size {
        return None;
    }
    Some((size - start).min(CHUNK_SIZE as u64) as usize)
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// The name is longer than allowed.
    #[error("the name is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a control character.
    #[error("the name holds the control character U+{0:04X}")]
    ControlCharacter(u32),
}

fn validate(name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max {
        return Err(NameError::TooLong {
            len: name.len(),
            max,
        });
    }
    match name.chars().find(|c| c.is_control()) {
        Some(c) => Err(NameError::ControlCharacter(c as u32)),
        None => Ok(()),
    }
}

/// Checks a user name: 1 to 64 UTF-8 bytes, no control characters.
pub fn validate_user_name(name: &str) -> Result<(), NameError> {
    validate(name, MAX_USER_NAME)
}

/// Checks a file name: 1 to 255 UTF-8 bytes, no control characters.
pub fn validate_file_name(name: &str) -> Result<(), NameError> {
    validate(name, MAX_FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_math_follows_the_spec() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(256), 1);
        assert_eq!(chunk_count(257), 2);
        assert_eq!(chunk_count(u32::MAX), 16_777_216);
        assert_eq!(chunk_len(0, 0), None);
        assert_eq!(chunk_len(257, 0), Some(256));
        assert_eq!(chunk_len(257, 1), Some(1));
        assert_eq!(chunk_len(257, 2), None);
        assert_eq!(chunk_len(u32::MAX, 16_777_215), Some(255));
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(validate_user_name(""), Err(NameError::Empty));
        assert!(validate_user_name(&"a".repeat(64)).is_ok());
        assert!(matches!(
            validate_user_name(&"a".repeat(65)),
            Err(NameError::TooLong { len: 65, max: 64 })
        ));
        assert_eq!(
            validate_user_name("a\nb"),
            Err(NameError::ControlCharacter(10))
        );
        assert!(validate_file_name(&"é".repeat(127)).is_ok());
        assert!(validate_file_name(&"é".repeat(128)).is_err());
        assert!(validate_user_name("Zoë 🙂").is_ok());
    }
}
