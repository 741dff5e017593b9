//! Feature tables as data: the built-in tables reproduce the models and
//! scores of the tables that were Rust code, a site's own table for its own
//! log trains and scores through the real binaries, and a broken table is
//! refused with the file, line and key.

use std::path::Path;
use std::process::Command;

use crate::util::{root, tempdir, train};

/// A model file's content without what changes from run to run or place to
/// place (when and where it was trained, how long it took, the checksum
/// over all of it) nor what was added since the pin (where the table came
/// from).
fn model_fingerprint(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let o = v.as_object_mut().unwrap();
    for k in ["created", "checksum", "crate_version"] {
        o.remove(k);
    }
    let t = o["training"].as_object_mut().unwrap();
    for k in ["seconds", "log_dir", "files"] {
        t.remove(k);
    }
    o["features"]
        .as_object_mut()
        .unwrap()
        .remove("table_origin");
    crc32fast::hash(serde_json::to_string(&v).unwrap().as_bytes())
}

/// The models and replay scores of the five classic modules on the example
/// logs are those of the tables that were Rust code (pinned on main at
/// 8824ebf before the tables became files).
#[test]
fn built_in_tables_reproduce_the_models_and_scores_of_the_code_tables() {
    let dir = tempdir("pinned");
    train(&dir, "all", &[]);
    let mut got = Vec::new();
    for m in ["conn", "dns", "http", "ssh", "ssl"] {
        got.push((m, model_fingerprint(&dir.join(format!("{m}.model.json")))));
    }
    let scores = dir.join("scores.json");
    let out = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(["--replay", root().join("examples/logs").to_str().unwrap()])
        .args(["--model-dir", dir.to_str().unwrap()])
        .args(["--output", scores.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read(&scores).unwrap();
    got.push(("scores", crc32fast::hash(&text)));
    let pinned: [(&str, u32); 6] = PINNED;
    assert_eq!(got, pinned);
}

const PINNED: [(&str, u32); 6] = [
    ("conn", 0x4b3e_ca85),
    ("dns", 0x280c_7d10),
    ("http", 0x297b_36a0),
    ("ssh", 0xbfb0_92fa),
    ("ssl", 0xd69d_f39d),
    ("scores", 0x43e0_3547),
];
