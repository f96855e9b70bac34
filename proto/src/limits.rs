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
/// The shortest password, in UTF-8 bytes.
pub const MIN_PASSWORD: usize = 8;
/// The longest password, in UTF-8 bytes.
pub const MAX_PASSWORD: usize = 1024;
/// Bit 63 of a delivered message number marks a broadcast.
pub const BROADCAST_BIT: u64 = 1 << 63;

/// The largest number of seconds a duration flag accepts: one week, far
/// beyond any sensible timeout and far from where seconds overflow a
/// `Duration`.
pub const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// Parses a seconds-valued flag (server, gateway and `chat` alike): a
/// finite number above 0 and at most [`MAX_SECONDS`], so
/// `Duration::from_secs_f64`, which panics on infinite, NaN, negative or
/// huge values, never sees anything else.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= MAX_SECONDS {
        Ok(v)
    } else {
        Err(format!(
            "`{s}` is out of range: give a number of seconds above 0 and at most {MAX_SECONDS} (one week)"
        ))
    }
}

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
    /// The name holds a character that is invisible or changes the
    /// direction of the text around it, so two names that look the same
    /// could differ, or a name could disguise what follows it.
    #[error("the name holds the invisible or direction-changing character U+{0:04X}")]
    Invisible(u32),
    /// A user name starts or ends with whitespace, or holds whitespace
    /// other than the plain space U+0020.
    #[error("the name starts or ends with a space, or holds a space other than U+0020")]
    Whitespace,
}

/// The invisible and direction-changing characters names may not hold,
/// as sorted, disjoint, inclusive ranges: every format character
/// (Unicode category Cf, as of Unicode 16), the line and paragraph
/// separators, the Hangul fillers, the combining grapheme joiner, the
/// Khmer inherent vowels and the variation selectors.
const INVISIBLE: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),   // soft hyphen (Cf)
    (0x034F, 0x034F),   // combining grapheme joiner
    (0x0600, 0x0605),   // Arabic number signs (Cf)
    (0x061C, 0x061C),   // Arabic letter mark (Cf, bidi)
    (0x06DD, 0x06DD),   // Arabic end of ayah (Cf)
    (0x070F, 0x070F),   // Syriac abbreviation mark (Cf)
    (0x0890, 0x0891),   // Arabic pound and piastre marks above (Cf)
    (0x08E2, 0x08E2),   // Arabic disputed end of ayah (Cf)
    (0x115F, 0x1160),   // Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),   // Khmer inherent vowels
    (0x180B, 0x180F),   // Mongolian variation selectors and vowel separator (Cf)
    (0x200B, 0x200F),   // zero-width space, (non-)joiner, LRM, RLM (Cf)
    (0x2028, 0x202E),   // line and paragraph separators; bidi embeddings and overrides (Cf)
    (0x2060, 0x2064),   // word joiner, invisible operators (Cf)
    (0x2066, 0x206F),   // bidi isolates; deprecated format characters (Cf)
    (0x3164, 0x3164),   // Hangul filler
    (0xFE00, 0xFE0F),   // variation selectors
    (0xFEFF, 0xFEFF),   // zero-width no-break space, byte order mark (Cf)
    (0xFFA0, 0xFFA0),   // halfwidth Hangul filler
    (0xFFF9, 0xFFFB),   // interlinear annotation controls (Cf)
    (0x110BD, 0x110BD), // Kaithi number sign (Cf)
    (0x110CD, 0x110CD), // Kaithi number sign above (Cf)
    (0x13430, 0x1343F), // Egyptian hieroglyph format controls (Cf)
    (0x1BCA0, 0x1BCA3), // shorthand format controls (Cf)
    (0x1D173, 0x1D17A), // musical symbol format controls (Cf)
    (0xE0001, 0xE0001), // language tag (Cf)
    (0xE0020, 0xE007F), // tag characters (Cf)
    (0xE0100, 0xE01EF), // variation selectors supplement
];

/// Whether names may not hold `c` because it is invisible or changes the
/// direction of the text (see [`INVISIBLE`]).
pub fn is_invisible(c: char) -> bool {
    let c = c as u32;
    INVISIBLE
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
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
    for c in name.chars() {
        if c.is_control() {
            return Err(NameError::ControlCharacter(c as u32));
        }
        if is_invisible(c) {
            return Err(NameError::Invisible(c as u32));
        }
    }
    Ok(())
}

/// Why a password was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a password must be {MIN_PASSWORD} to {MAX_PASSWORD} bytes long; this one is {0}")]
pub struct PasswordError(pub usize);

/// Checks a password: 8 to 1024 UTF-8 bytes, any characters.
pub fn validate_password(password: &str) -> Result<(), PasswordError> {
    let len = password.len();
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&len) {
        Ok(())
    } else {
        Err(PasswordError(len))
    }
}

/// Checks a user name: 1 to 64 UTF-8 bytes; no control, invisible or
/// direction-changing character; no whitespace at either end and none but
/// U+0020 inside.
pub fn validate_user_name(name: &str) -> Result<(), NameError> {
    validate(name, MAX_USER_NAME)?;
    let edge = |c: Option<char>| c.is_some_and(char::is_whitespace);
    if edge(name.chars().next())
        || edge(name.chars().next_back())
        || name.chars().any(|c| c.is_whitespace() && c != ' ')
    {
        return Err(NameError::Whitespace);
    }
    Ok(())
}

/// Checks a file name: 1 to 255 UTF-8 bytes; no control, invisible or
/// direction-changing character.
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

    #[test]
    fn the_invisible_table_is_sorted_and_disjoint() {
        for w in INVISIBLE.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:x?}");
        }
    }

    #[test]
    fn invisible_and_direction_changing_characters_are_refused() {
        for c in [
            0xAD, 0x34F, 0x600, 0x61C, 0x6DD, 0x70F, 0x8E2, 0x115F, 0x1160, 0x17B4, 0x180E, 0x200B,
            0x200D, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A, 0x202E, 0x2060, 0x2064, 0x2066, 0x2069,
            0x3164, 0xFE00, 0xFE0F, 0xFEFF, 0xFFA0, 0xFFF9, 0x110BD, 0x1BCA3, 0x1D173, 0xE0001,
            0xE0020, 0xE007F, 0xE0100, 0xE01EF,
        ] {
            let ch = char::from_u32(c).unwrap();
            let name = format!("ab{ch}c");
            assert_eq!(
                validate_user_name(&name),
                Err(NameError::Invisible(c)),
                "{c:X}"
            );
            assert_eq!(
                validate_file_name(&name),
                Err(NameError::Invisible(c)),
                "{c:X}"
            );
        }
        // Neighbours of the ranges are fine.
        for c in [
            '\u{AC}',
            '\u{2027}',
            '\u{2065}',
            '\u{FE10}',
            '\u{E01F0}',
            '\u{E000}',
        ] {
            assert!(!is_invisible(c), "{:X}", c as u32);
        }
    }

    #[test]
    fn user_names_have_plain_inner_spaces_only() {
        assert!(validate_user_name("Ada Lovelace").is_ok());
        for bad in [
            " ada",
            "ada ",
            "ada\u{A0}l",
            "ada\u{3000}l",
            "ada\u{2003}l",
            "\u{A0}",
        ] {
            assert_eq!(
                validate_user_name(bad),
                Err(NameError::Whitespace),
                "{bad:?}"
            );
        }
        // File names may hold any visible space.
        assert!(validate_file_name(" notes .txt").is_ok());
        assert!(validate_file_name("a\u{A0}b").is_ok());
    }
}
