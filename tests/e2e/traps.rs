//! Mistakes a new user makes, each answered by a clear message or the
//! right behaviour instead of a silent trap.

use std::fs;
use std::process::{Command, Output};

use crate::util::{models, root, tempdir};

fn run(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn modules_separated_by_spaces_in_the_environment() {
    let logs = root().join("examples/logs");
    let out = run(
        env!("CARGO_BIN_EXE_azw-train"),
        &["--log-dir", logs.to_str().unwrap(), "--dry-run"],
        &[("AZW_MODULES", "CONN DNS")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let modules: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(modules, ["CONN", "DNS"], "{text}");
}

#[test]
fn zeeks_live_folder_is_not_a_log_dir() {
    let dir = tempdir("current");
    let current = dir.join("current");
    fs::create_dir_all(&current).unwrap();
    let infer = run(
        env!("CARGO_BIN_EXE_azw-infer"),
        &["--log-dir", current.to_str().unwrap()],
        &[("AZW_MODEL_DIR", models().to_str().unwrap())],
    );
    assert!(!infer.status.success());
    assert!(
        stderr(&infer).contains("give its parent"),
        "{}",
        stderr(&infer)
    );
    let train = run(
        env!("CARGO_BIN_EXE_azw-train"),
        &["--log-dir", current.to_str().unwrap(), "--dry-run"],
        &[],
    );
    assert!(!train.status.success());
    assert!(
        stderr(&train).contains("rotated history"),
        "{}",
        stderr(&train)
    );

    // A log dir without current/: nothing live to follow, said at once.
    fs::remove_dir(&current).unwrap();
    let infer = run(
        env!("CARGO_BIN_EXE_azw-infer"),
        &["--log-dir", dir.to_str().unwrap()],
        &[("AZW_MODEL_DIR", models().to_str().unwrap())],
    );
    assert!(!infer.status.success());
    assert!(
        stderr(&infer).contains("no current/ folder"),
        "{}",
        stderr(&infer)
    );
}

#[test]
fn only_a_missing_model_is_told_to_train_first() {
    let dir = tempdir("model-advice");
    let conn = root().join("examples/logs/conn.log");
    let args = |models: &str| {
        vec![
            "--replay".to_owned(),
            conn.to_str().unwrap().to_owned(),
            "--modules".into(),
            "conn".into(),
            "--model-dir".into(),
            models.to_owned(),
        ]
    };
    let missing = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(args(dir.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(
        stderr(&missing).contains("train a model first (azw-train --modules CONN)"),
        "{}",
        stderr(&missing)
    );
    // A log type without a built-in table: the advice gives it a table
    // (the bare command it gave was refused as an unknown module).
    let mut own = args(dir.to_str().unwrap());
    own[3] = "myapp".into();
    let own = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(own)
        .output()
        .unwrap();
    assert!(
        stderr(&own).contains("MYAPP has no built-in feature table")
            && stderr(&own).contains("--tables DIR, with DIR/myapp.toml"),
        "{}",
        stderr(&own)
    );
    fs::write(
        dir.join("conn.model.json"),
        "{\"format\": \"autozeekwatch-model\"",
    )
    .unwrap();
    let damaged = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(args(dir.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(!damaged.status.success());
    let err = stderr(&damaged);
    assert!(
        !err.contains("train a model first") && err.contains("conn.model.json"),
        "{err}"
    );
    // The model file itself given as the folder: said as such, not
    // "no model in ...".
    let model_file = dir.join("conn.model.json");
    let file = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(args(model_file.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(!file.status.success());
    assert!(
        stderr(&file).contains("not a folder (it names a file"),
        "{}",
        stderr(&file)
    );
}
