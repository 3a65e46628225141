//! [`Lsn`]: a position in the write-ahead log, parsed and displayed as PostgreSQL does.

use std::fmt;
use std::str::FromStr;

/// A write-ahead log position (PostgreSQL's `pg_lsn`): a 64-bit byte offset written as two
/// hexadecimal numbers, the high and low 32 bits, separated by a slash (`16/B374D848`).
///
/// Parsing accepts what PostgreSQL's `pg_lsn` input accepts: 1 to 8 hexadecimal digits on
/// each side, either case, no spaces, no sign. [`Display`](fmt::Display) writes it the way
/// the server does (`%X/%X`, upper case, no leading zeros), so a value read from the server
/// prints back unchanged.
///
/// # Examples
///
/// ```
/// use pgsteady_slot::Lsn;
///
/// let lsn: Lsn = "16/B374D848".parse()?;
/// assert_eq!(lsn.as_u64(), 0x16_B374_D848);
/// assert_eq!(lsn.to_string(), "16/B374D848");
/// let later = Lsn::from_u64(lsn.as_u64() + 16);
/// assert_eq!(later.bytes_after(lsn), 16);
/// assert!("16/ZZ".parse::<Lsn>().is_err());
/// # Ok::<(), pgsteady_slot::LsnError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(u64);

impl Lsn {
    /// `0/0`: PostgreSQL's invalid position.
    pub const ZERO: Lsn = Lsn(0);

    /// The position `n` bytes into the log.
    pub const fn from_u64(n: u64) -> Lsn {
        Lsn(n)
    }

    /// The byte offset.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// How many bytes of WAL lie from `earlier` up to this position; 0 when `earlier` is not
    /// earlier (the same as PostgreSQL's `self - earlier`, floored at 0).
    pub const fn bytes_after(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The position `bytes` further on, or `None` past the end of the 64-bit range.
    pub const fn checked_add(self, bytes: u64) -> Option<Lsn> {
        match self.0.checked_add(bytes) {
            Some(n) => Some(Lsn(n)),
            None => None,
        }
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = LsnError;

    fn from_str(s: &str) -> Result<Lsn, LsnError> {
        let err = || LsnError {
            input: s.chars().take(40).collect(),
        };
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            u32::from_str_radix(part, 16).map_err(|_| err())
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

/// A string that is not an LSN. Its message quotes the input (at most 40 characters) and
/// shows the expected form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsnError {
    input: String,
}

impl LsnError {
    /// The rejected input (at most its first 40 characters).
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for LsnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.input.is_empty() {
            f.write_str("an empty string is not an LSN")?;
        } else {
            write!(f, "`{}` is not an LSN", self.input.escape_debug())?;
        }
        f.write_str(
            ": expected two hexadecimal numbers of 1 to 8 digits separated by a slash, e.g. 16/B374D848",
        )
    }
}

impl std::error::Error for LsnError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_like_postgres() {
        for (text, value, shown) in [
            ("16/B374D848", 0x16_B374_D848, "16/B374D848"),
            ("0/0", 0, "0/0"),
            ("0/1", 1, "0/1"),
            ("16/b374d848", 0x16_B374_D848, "16/B374D848"),
            ("00000016/0000D848", 0x16_0000_D848, "16/D848"),
            ("FFFFFFFF/FFFFFFFF", u64::MAX, "FFFFFFFF/FFFFFFFF"),
        ] {
            let lsn: Lsn = text.parse().unwrap();
            assert_eq!(lsn.as_u64(), value, "{text}");
            assert_eq!(lsn.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<Lsn>().unwrap(), lsn);
        }
    }

    #[test]
    fn rejects_what_pg_lsn_rejects() {
        for bad in [
            "",
            "abc",
            "16/ZZ",
            "16/",
            "/16",
            "16",
            "1/2/3",
            " 16/1",
            "16/1 ",
            "+1/2",
            "-1/2",
            "123456789/0",
            "0/123456789",
            "0x16/1",
            "16/B374D848\n",
        ] {
            let err = bad.parse::<Lsn>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("not an LSN"), "{bad:?}: {msg}");
            assert!(msg.contains("16/B374D848"), "{bad:?}: {msg}");
            if !bad.is_empty() {
                assert!(
                    msg.contains(&bad.trim_end().escape_debug().to_string()),
                    "{msg}"
                );
            }
        }
        assert_eq!(
            "16/ZZ".parse::<Lsn>().unwrap_err().to_string(),
            "`16/ZZ` is not an LSN: expected two hexadecimal numbers of 1 to 8 digits separated by a slash, e.g. 16/B374D848"
        );
        assert!(
            "".parse::<Lsn>()
                .unwrap_err()
                .to_string()
                .starts_with("an empty string is not an LSN")
        );
        // A long input is cut in the message.
        let long = "x".repeat(1000);
        assert!(long.parse::<Lsn>().unwrap_err().to_string().len() < 200);
    }

    #[test]
    fn arithmetic() {
        let a = Lsn::from_u64(100);
        let b = Lsn::from_u64(250);
        assert_eq!(b.bytes_after(a), 150);
        assert_eq!(a.bytes_after(b), 0);
        assert!(a < b);
        assert_eq!(Lsn::from_u64(u64::MAX).checked_add(1), None);
        assert_eq!(a.checked_add(5), Some(Lsn::from_u64(105)));
    }
}
