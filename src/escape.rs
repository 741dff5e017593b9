//! Escaping text that somebody else chose on its way to a person or to a
//! line-oriented file.
//!
//! User agents, host names, MIME types and uids come from the traffic, so
//! an attacker writes them; learned category values become feature names
//! (`user_agent=<value>`) that reach the scored output and the terminal.
//! Printed raw, such a value can clear or retitle a terminal (ESC, the C1
//! CSI `U+009B`), ring its bell, forge a log line with a newline, reorder
//! what a person reads with bidi overrides, or run a formula when a CSV
//! file is opened in a spreadsheet. Each function here makes one kind of
//! output safe:
//!
//! - [`terminal`]: text for a person (a terminal, a log line): every
//!   control and bidi character becomes a visible escape (`\x1b`,
//!   `\u{202e}`), and `\` becomes `\\`, so what is shown is unambiguous.
//! - [`tsv_field`]: a Zeek TSV cell, with Zeek's own `\xHH` escapes.
//! - [`csv_cell`]: a CSV cell: [`terminal`]'s escapes, and a leading
//!   formula character neutralised with `'`.
//! - [`json_in_place`]: serde_json output, whose strings keep C1 and bidi
//!   characters raw (JSON allows them): they become `\uXXXX`, which every
//!   JSON reader decodes to the same text.

use std::borrow::Cow;
use std::fmt::Write as _;

/// True for the characters that must never reach a terminal or a line
/// raw: C0 controls (newline, tab, ESC, BEL...), DEL, C1 controls
/// (U+0080-U+009F, which some terminals obey like ESC sequences), the bidi
/// embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) and
/// marks (U+061C, U+200E, U+200F), the Unicode line and paragraph
/// separators (U+2028, U+2029), which some viewers break lines on, and
/// the characters that show as nothing: the soft hyphen, zero-width
/// spaces and joiners (U+200B-U+200D, U+2060-U+2064, U+180E), the byte
/// order mark (U+FEFF), interlinear annotations (U+FFF9-U+FFFB) and the
/// tag characters (U+E0000-U+E007F), in which a whole hidden text can be
/// spelled: `evil.com` with a zero-width space reads as a name it is not.
pub fn is_hostile(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x1f'
            | '\x7f'..='\u{9f}'
            | '\u{ad}'
            | '\u{61c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

/// Text shown to a person: [`is_hostile`] characters as visible escapes
/// (`\n`, `\r`, `\t`, `\x1b` below U+0080, `\u{9b}` above) and `\` as `\\`.
/// Borrowed when nothing needs escaping, which is the usual case.
pub fn terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || is_hostile(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hostile(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_hostile(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A Zeek TSV cell, escaped as Zeek's ASCII writer does: the separator
/// (tab), backslash and non-printable bytes as `\xHH`, byte by byte (so
/// U+009B is `\xc2\x9b`, which a Zeek reader turns back into the same
/// text); in a set or vector element also the set separator `,`. A value
/// that reads as the unset (`-`) or empty (`(empty)`) marker is escaped
/// whole, so it stays a value. The empty string is Zeek's `(empty)`: an
/// empty cell (two tabs in a row) shifts the columns of tools that merge
/// runs of separators (awk's default). (An empty set element stays empty:
/// there `(empty)` would read as an empty set.)
pub fn tsv_field(text: &str, in_set: bool) -> String {
    if text.is_empty() && !in_set {
        return "(empty)".into();
    }
    if text == "-" || text == "(empty)" {
        return text.bytes().map(|b| format!("\\x{b:02x}")).collect();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' || (c == ',' && in_set) || is_hostile(c) {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that make a spreadsheet read a cell as a formula when they
/// start it (OWASP's list: `=`, `+`, `-`, `@`, tab, carriage return).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A CSV cell of free text: [`terminal`]'s escapes (so a cell never spans
/// lines nor carries a control byte), then a `'` in front if the cell
/// would start with a formula character: `=cmd|' /C calc'!A0` is written
/// `'=cmd|' /C calc'!A0`, which spreadsheets show as text. The csv writer
/// adds the quoting on top. Numbers are not free text and do not go
/// through here (a negative number stays a number).
pub fn csv_cell(text: &str) -> Cow<'_, str> {
    let escaped = terminal(text);
    if escaped.starts_with(FORMULA_STARTS) {
        return Cow::Owned(format!("'{escaped}"));
    }
    escaped
}

/// Replaces the [`is_hostile`] characters that serde_json leaves raw
/// (DEL, C1, bidi, separators: it escapes only C0) in `out[from..]` with
/// `\uXXXX` escapes. JSON text holds them only inside strings, where
/// `\uXXXX` means the same character, so the document reads back
/// unchanged; only its bytes become safe to print. C0 characters are left
/// alone: serde_json escaped those in strings, so any left are the
/// caller's own (a line's newline). `out[from..]` must be serde_json
/// output (UTF-8).
pub fn json_in_place(out: &mut Vec<u8>, from: usize) {
    // Every hostile character left raw is DEL or starts with a byte of
    // 0x80 or more: plain ASCII output (nearly every record) is untouched.
    // Word-at-a-time ASCII check and memchr: this runs for every record.
    let tail = &out[from..];
    if tail.is_ascii() && memchr::memchr(0x7f, tail).is_none() {
        return;
    }
    let Ok(tail) = std::str::from_utf8(&out[from..]) else {
        return;
    };
    if let Cow::Owned(escaped) = json_text(tail) {
        out.truncate(from);
        out.extend_from_slice(escaped.as_bytes());
    }
}

/// [`json_in_place`] of JSON text held as a string (a log line): the same
/// text, its [`is_hostile`] characters from DEL up as `\uXXXX` escapes;
/// borrowed when it has none.
pub fn json_text(text: &str) -> Cow<'_, str> {
    let left_raw = |c: char| c >= '\x7f' && is_hostile(c);
    if !text.chars().any(left_raw) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if left_raw(c) {
            // Past the BMP (the tag characters) as a surrogate pair:
            // JSON's `\u` takes four hex digits.
            for unit in c.encode_utf16(&mut [0; 2]) {
                let _ = write!(escaped, "\\u{:04x}", unit);
            }
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Values an attacker can put in a user agent or host name.
    pub(crate) const HOSTILE: [&str; 11] = [
        "\x1b[2J\x1b]0;owned\x07",
        "bell\x07here",
        "csi\u{9b}31m",
        "forged\nline",
        "cr\rover",
        "abc\u{202e}txt.exe",
        "=cmd|' /C calc'!A0",
        "semi;colon,comma\"quote",
        "del\x7f\u{2066}iso\u{2069}",
        "ev\u{200b}il.com\u{feff}",
        "tag\u{e0041}\u{e0042}hidden\u{ad}",
    ];

    /// No byte a terminal or a line reader acts on: C0, DEL, C1 (as UTF-8
    /// `\xc2\x80`-`\xc2\x9f`) or a bidi character.
    pub(crate) fn assert_inert(text: &str) {
        assert!(!text.chars().any(is_hostile), "raw control in {text:?}");
    }

    #[test]
    fn terminal_makes_every_control_visible() {
        for v in HOSTILE {
            let shown = terminal(v);
            assert_inert(&shown);
            assert!(!shown.contains('\n'));
        }
        assert_eq!(terminal("\x1b[2J"), "\\x1b[2J");
        assert_eq!(terminal("a\nb\tc\\"), "a\\nb\\tc\\\\");
        assert_eq!(terminal("\u{9b}\u{202e}"), "\\u{9b}\\u{202e}");
        assert!(matches!(terminal("Mozilla/5.0 (X11)"), Cow::Borrowed(_)));
        assert_eq!(terminal("héllo wörld €"), "héllo wörld €");
    }

    #[test]
    fn tsv_fields_use_zeek_escapes() {
        assert_eq!(tsv_field("a\tb\\c", false), "a\\x09b\\x5cc");
        assert_eq!(tsv_field("a,b", true), "a\\x2cb");
        assert_eq!(tsv_field("a,b", false), "a,b");
        assert_eq!(tsv_field("\u{9b}", false), "\\xc2\\x9b");
        assert_eq!(tsv_field("\u{202e}", false), "\\xe2\\x80\\xae");
        assert_eq!(tsv_field("-", false), "\\x2d");
        assert_eq!(tsv_field("", false), "(empty)");
        assert_eq!(tsv_field("", true), "");
        assert_eq!(tsv_field("é", false), "é");
        for v in HOSTILE {
            let cell = tsv_field(v, true);
            assert_inert(&cell);
            assert!(!cell.contains(',') && !cell.contains('\t'));
        }
    }

    #[test]
    fn csv_cells_cannot_start_a_formula() {
        assert_eq!(csv_cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        for start in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            let cell = csv_cell(start);
            assert!(!cell.starts_with(FORMULA_STARTS), "{cell:?}");
        }
        assert_eq!(csv_cell("C0FSyu33TMaXqq4vR8"), "C0FSyu33TMaXqq4vR8");
        for v in HOSTILE {
            assert_inert(&csv_cell(v));
        }
    }

    #[test]
    fn json_keeps_its_meaning_and_loses_raw_controls() {
        for v in HOSTILE {
            let mut out = b"prefix ".to_vec();
            let from = out.len();
            serde_json::to_writer(&mut out, &vec![v]).unwrap();
            json_in_place(&mut out, from);
            let text = std::str::from_utf8(&out[from..]).unwrap();
            assert_inert(text);
            let back: Vec<String> = serde_json::from_str(text).unwrap();
            assert_eq!(back, [v]);
        }
        let mut line = "{\"ua\":\"Mozilla é\u{9b}\"}\n".as_bytes().to_vec();
        json_in_place(&mut line, 0);
        assert_eq!(line, b"{\"ua\":\"Mozilla \xc3\xa9\\u009b\"}\n");
        let mut line = "\"\u{e0041}\"".as_bytes().to_vec();
        json_in_place(&mut line, 0);
        assert_eq!(line, b"\"\\udb40\\udc41\"");
        assert_eq!(terminal("a\u{200b}b"), "a\\u{200b}b");
    }
}
