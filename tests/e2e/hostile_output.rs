//! Text the traffic chose, on its way to a person: a user agent full of
//! terminal escapes, learned by the real `azw-train` from a TSV log and
//! shown by `azw-train --inspect`, must reach the terminal as visible
//! escapes, never as raw control bytes or an extra line.

use std::fs;
use std::process::Output;

use crate::util::{example_text, tempdir};

/// ESC[2J (clear screen), an OSC title ended by BEL, a C1 CSI (U+009B), a
/// newline that would forge a line, and a right-to-left override, written
/// with Zeek's TSV escapes (the reader turns them into the raw characters).
const HOSTILE_UA: &str =
    r"\x1b[2J\x1b]0;pwned\x07Mozilla\xc2\x9b31m\x0aforged: line\xe2\x80\xaeexe.txt";

/// The example HTTP log with the user agent of every other record replaced.
pub(crate) fn hostile_http_log() -> String {
    let mut column = None;
    let mut out = String::new();
    for (i, line) in example_text("http.log").lines().enumerate() {
        if let Some(fields) = line.strip_prefix("#fields\t") {
            column = fields.split('\t').position(|f| f == "user_agent");
        }
        let mut cells: Vec<&str> = line.split('\t').collect();
        match column {
            Some(c) if !line.starts_with('#') && i % 2 == 0 => cells[c] = HOSTILE_UA,
            _ => {}
        }
        out.push_str(&cells.join("\t"));
        out.push('\n');
    }
    assert!(column.is_some(), "no user_agent column in http.log");
    out
}

/// No ESC, BEL, other C0 control but newline, DEL, C1 or bidi character.
pub(crate) fn assert_inert(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let raw: Vec<char> = text
        .chars()
        .filter(|&c| c != '\n' && autozeekwatch::escape::is_hostile(c))
        .collect();
    assert!(raw.is_empty(), "{what} carries raw {raw:?}:\n{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("forged")),
        "{what} has a forged line:\n{text}"
    );
}

fn run(args: &[&str]) -> Output {
    crate::util::azw_train().args(args).output().unwrap()
}

#[test]
fn inspect_shows_a_hostile_user_agent_escaped() {
    let dir = tempdir("hostile-output");
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).unwrap();
    fs::write(logs.join("http.log"), hostile_http_log()).unwrap();
    let models = dir.join("models");
    let out = run(&[
        "--log-dir",
        logs.to_str().unwrap(),
        "--modules",
        "http",
        "--model-dir",
        models.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_inert("training's stdout", &out.stdout);
    assert_inert("training's stderr", &out.stderr);

    let model = models.join("http.model.json");
    let out = run(&["--inspect", model.to_str().unwrap()]);
    assert!(out.status.success());
    assert_inert("--inspect's stdout", &out.stdout);
    assert_inert("--inspect's stderr", &out.stderr);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(r"\x1b[2J\x1b]0;pwned\x07Mozilla\u{9b}31m\nforged: line\u{202e}exe.txt"),
        "the learned user agent is not shown escaped:\n{shown}"
    );
}
