//! Attacker-written text (user agents, hostnames, queries) made safe for
//! the places it reaches a person: terminals and log lines.

use std::borrow::Cow;
use std::fmt::Write;

/// True for characters a terminal acts on instead of showing: C0 and C1
/// controls, DEL, and the bidirectional overrides that reorder a line.
fn is_dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character shown as an escape (`\x1b`,
/// `\u{9b}`, `\n`), so it can neither move the cursor, retitle or clear a
/// terminal, nor forge a line in a log.
pub fn terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_dangerous) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_dangerous(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_dangerous(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible_escapes() {
        assert_eq!(terminal("Mozilla/5.0"), "Mozilla/5.0");
        let hostile = "a\x1b[2J\x07b\u{9b}c\nd\u{202e}e\x7f";
        let shown = terminal(hostile);
        assert_eq!(shown, "a\\x1b[2J\\x07b\\u{9b}c\\nd\\u{202e}e\\x7f");
        assert!(!shown.chars().any(is_dangerous));
    }
}
