//! Mapping a server error position to a line and column of the file.

/// A 1-based line and column (in characters) and the text of that line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// The line's text (without its line ending).
    pub line_text: String,
}

/// Where a server error position points in `text`.
///
/// PostgreSQL's `position` field is a 1-based index into the query string counted in
/// *characters*, not bytes (protocol docs, ErrorResponse field `P`); with a UTF-8 client
/// encoding those are Unicode scalar values, i.e. Rust `char`s. A position past the end (the
/// server points one past the last character for "syntax error at end of input") maps to the
/// end of the last line.
pub(crate) fn position_in(text: &str, position: u32) -> Option<Position> {
    let target = (position as usize).checked_sub(1)?;
    let mut line = 1;
    let mut line_start = 0; // byte offset of the current line
    let mut column = 1;
    for (index, (byte, ch)) in text.char_indices().enumerate() {
        if index == target {
            break;
        }
        if ch == '\n' {
            line += 1;
            line_start = byte + 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    let rest = &text[line_start..];
    let line_text = rest.split('\n').next().unwrap_or("").trim_end_matches('\r');
    Some(Position {
        line,
        column,
        line_text: line_text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_from_server_position() {
        let text = "-- header\nCREATE TABLE t (\n  id bigint,\n  naem tex\n);\n";
        // The server counts characters from 1: position of "tex" on line 4.
        let pos_of = |needle: &str| text[..text.find(needle).unwrap()].chars().count() as u32 + 1;
        let p = position_in(text, pos_of("tex\n")).unwrap();
        assert_eq!(
            (p.line, p.column, p.line_text.as_str()),
            (4, 8, "  naem tex")
        );
        let p = position_in(text, 1).unwrap();
        assert_eq!(
            (p.line, p.column, p.line_text.as_str()),
            (1, 1, "-- header")
        );
        // Multi-byte characters count once: the column is in characters, not bytes.
        let utf = "SELECT 'é', 'ü';\nSELEC 1;";
        let p = position_in(utf, pos_of_in(utf, "SELEC 1")).unwrap();
        assert_eq!((p.line, p.column), (2, 1));
        let p = position_in(utf, pos_of_in(utf, "'ü'")).unwrap();
        assert_eq!(
            (p.line, p.column, p.line_text.as_str()),
            (1, 13, "SELECT 'é', 'ü';")
        );
        // CRLF: the line text has no '\r'; columns are unaffected.
        let crlf = "SELECT 1;\r\nSELEC 2;\r\n";
        let p = position_in(crlf, pos_of_in(crlf, "SELEC 2")).unwrap();
        assert_eq!((p.line, p.column, p.line_text.as_str()), (2, 1, "SELEC 2;"));
        // "syntax error at end of input" points one past the end.
        let short = "SELECT (1";
        let p = position_in(short, 10).unwrap();
        assert_eq!((p.line, p.column), (1, 10));
        assert_eq!(position_in(short, 0), None);
    }

    fn pos_of_in(text: &str, needle: &str) -> u32 {
        text[..text.find(needle).unwrap()].chars().count() as u32 + 1
    }
}
