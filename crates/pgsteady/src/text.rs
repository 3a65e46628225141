//! Text from outside (a server's error message, a host name, a file name) made safe to print:
//! terminal control characters escaped, length capped.
//!
//! A server's ErrorResponse is arbitrary bytes chosen by whoever answers on the port: with ESC,
//! OSC or CR/LF in it a hostile or broken server can forge output lines, retitle the terminal
//! or hide text; a 50 MB one was printed whole. Every [`crate::Error`] is
//! displayed through [`sanitize`], so every command's output and `--json` get this for free.

// Public with the `probe` feature only.
#![cfg_attr(not(feature = "probe"), allow(dead_code, unreachable_pub))]

use std::borrow::Cow;
use std::fmt::Write;

/// How many characters of outside text a message keeps. Default for [`sanitize`].
pub const MAX_TEXT_CHARS: usize = 4096;

/// `s` with control characters escaped (`\n` as `\\n`, ESC as `\\u{1b}`, bidirectional
/// overrides as `\\u{202e}`...) and cut to [`MAX_TEXT_CHARS`] characters, with a note saying
/// how much was cut.
///
/// # Examples
///
/// ```
/// let shown = pgsteady::text::sanitize("bad\x1b]0;pwned\x07\nFORGED LINE");
/// assert_eq!(shown, "bad\\u{1b}]0;pwned\\u{7}\\nFORGED LINE");
/// ```
pub fn sanitize(s: &str) -> Cow<'_, str> {
    sanitize_to(s, MAX_TEXT_CHARS)
}

/// [`sanitize`] with an explicit cap in characters.
pub fn sanitize_to(s: &str, max_chars: usize) -> Cow<'_, str> {
    let clean = !s.chars().any(needs_escape);
    if clean && s.len() <= max_chars {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(max_chars + 64));
    for (kept, (i, c)) in s.char_indices().enumerate() {
        if kept >= max_chars {
            let _ = write!(out, "… ({} more bytes not shown)", s.len() - i);
            return Cow::Owned(out);
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// C0 and C1 controls (ESC, CSI, OSC, CR, LF, BEL...), DEL, and the Unicode formatting
/// characters that reorder or hide text on a terminal.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_caps() {
        let rows = [
            ("plain text", "plain text"),
            ("a\nb\rc\td", "a\\nb\\rc\\td"),
            ("\x1b[31mred\x1b[0m", "\\u{1b}[31mred\\u{1b}[0m"),
            ("osc\x1b]0;title\x07", "osc\\u{1b}]0;title\\u{7}"),
            ("c1\u{9b}2J", "c1\\u{9b}2J"),
            ("bidi\u{202e}txt", "bidi\\u{202e}txt"),
            ("del\x7f", "del\\u{7f}"),
            ("ünïcödé ok", "ünïcödé ok"),
        ];
        for (input, want) in rows {
            assert_eq!(sanitize(input), want, "{input:?}");
        }
        let big = "x".repeat(50_000_000);
        let shown = sanitize(&big);
        assert!(shown.len() < MAX_TEXT_CHARS + 64, "{}", shown.len());
        assert!(
            shown.ends_with("(49995904 more bytes not shown)"),
            "{}",
            &shown[4000..]
        );
        assert!(matches!(sanitize("ok"), Cow::Borrowed(_)));
    }
}
