//! `azw-train` end to end, through the real binary, on the bundled example
//! logs (and on RITA's three-day capture when `../shared` is present).

use std::path::{Path, PathBuf};
use std::process::Output;

use autozeekwatch::model::{self, Model};
use autozeekwatch::LogKind;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn train(args: &[&str]) -> Output {
    crate::util::azw_train()
        .args(args)
        .output()
        .expect("azw-train runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn trains_all_five_modules_on_the_examples_and_inspects_them() {
    let models = tempfile::tempdir().unwrap();
    let logs = root().join("examples/logs");
    let out = train(&[
        "--log-dir",
        logs.to_str().unwrap(),
        "--modules",
        "all",
        "--model-dir",
        models.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // HTTP's 178 records hold out 17 and SSH's 44 hold out 4, too few:
    // their thresholds rest on the training records' own scores, and the
    // summary marks them so.
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("*: HTTP, SSH: fewer than 50 records were held out"),
        "{summary}"
    );
    for module in LogKind::CLASSIC {
        let path = models.path().join(model::file_name(module));
        let (model, encoder) = Model::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(model.module, module);
        let few = [LogKind::HTTP, LogKind::SSH].contains(&module);
        assert_eq!(model.threshold.in_sample, few, "{module}");
        assert_eq!(model.kitnet.n_features(), encoder.len());
        assert!(
            model.training.records > 0 && model.training.trained_records < model.training.records
        );
        assert!(model.threshold.value.is_finite() && model.threshold.value > 0.0);
        assert_eq!(
            model.training.files.len(),
            2,
            "{module}: a TSV and a JSON file"
        );

        let shown = train(&["--inspect", path.to_str().unwrap()]);
        assert!(shown.status.success(), "{}", text(&shown));
        let shown = text(&shown);
        for key in [
            "module:",
            "model format:",
            "records:",
            "threshold:",
            "held-out scores:",
            "features:",
        ] {
            assert!(shown.contains(key), "--inspect shows `{key}`:\n{shown}");
        }
        assert!(
            shown.contains(&format!("module:          {module}")),
            "{shown}"
        );
    }
}

#[test]
fn modules_parse_in_every_documented_form() {
    let models = tempfile::tempdir().unwrap();
    let logs = root().join("examples/logs");
    let out = train(&[
        "--log-dir",
        logs.to_str().unwrap(),
        "--modules",
        "ssh",
        "Http",
        "--model-dir",
        models.path().to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let s = text(&out);
    assert!(
        s.contains("SSH: 2 files, 44 records") && s.contains("HTTP: 2 files, 178 records"),
        "{s}"
    );
    assert!(!s.contains("CONN"), "{s}");
}

#[test]
fn errors_say_what_to_do() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--log-dir", "/nonexistent/zeek"],
            "no such file or directory",
        ),
        (
            &["--log-dir", ".", "--start-date", "20-04-2024"],
            "write it as YYYY-MM-DD",
        ),
        (
            &["--log-dir", ".", "--modules", "myapp"],
            "unknown module `myapp`",
        ),
        (
            &[
                "--log-dir",
                ".",
                "--start-date",
                "2024-04-21",
                "--end-date",
                "2024-04-20",
            ],
            "is after --end-date",
        ),
    ];
    for (args, expected) in cases {
        let out = train(args);
        assert_eq!(out.status.code(), Some(1), "{args:?} must fail");
        assert!(
            text(&out).contains(expected),
            "{args:?}: `{expected}` not in:\n{}",
            text(&out)
        );
    }
    // A bad flag, value or config file fails with 1, never 2 ("done, but
    // some inputs could not be read", which the systemd unit's training
    // step accepts); help is 0.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("azw.toml");
    std::fs::write(&config, "[azw-train]\nmin-record = 50\n").unwrap();
    let config = config.to_str().unwrap();
    for args in [
        &["--bogus"][..],
        &["--log-dir", ".", "--epochs", "many"],
        &["--config", config, "--log-dir", "."],
    ] {
        let out = train(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
    }
    assert!(
        text(&train(&["--config", config, "--log-dir", "."])).contains("unknown key `min-record`")
    );
    assert_eq!(train(&["--help"]).status.code(), Some(0));
    // An explicit module without logs is an error; under ALL it is skipped.
    let empty = tempfile::tempdir().unwrap();
    let out = train(&[
        "--log-dir",
        empty.path().to_str().unwrap(),
        "--modules",
        "conn",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no `conn` logs under"),
        "{}",
        text(&out)
    );
}

#[test]
fn too_few_records_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<&str> = include_str!("../../examples/logs/http.log")
        .lines()
        .take(20)
        .collect();
    std::fs::write(dir.path().join("http.log"), lines.join("\n")).unwrap();
    let out = train(&[
        "--log-dir",
        dir.path().to_str().unwrap(),
        "--modules",
        "http",
        "--model-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("HTTP: only 12 usable records in 1 files; at least 20 are needed"),
        "{}",
        text(&out)
    );
    assert!(
        !dir.path().join("http.model.json").exists(),
        "no useless model is written"
    );
}

#[test]
fn damaged_or_newer_models_are_refused_clearly() {
    let models = tempfile::tempdir().unwrap();
    let logs = root().join("examples/logs");
    let out = train(&[
        "--log-dir",
        logs.to_str().unwrap(),
        "--modules",
        "ssh",
        "--model-dir",
        models.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let path = models.path().join("ssh.model.json");
    let good = std::fs::read_to_string(&path).unwrap();

    let cut = models.path().join("cut.model.json");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let e = Model::load(&cut).unwrap_err().to_string();
    assert!(e.contains("damaged (truncated or edited)"), "{e}");

    let newer = models.path().join("newer.model.json");
    std::fs::write(
        &newer,
        good.replacen("\"format_version\": 2", "\"format_version\": 99", 1),
    )
    .unwrap();
    let e = Model::load(&newer).unwrap_err().to_string();
    assert!(
        e.contains("written by a newer autozeekwatch (model format 99"),
        "{e}"
    );

    let other = models.path().join("other.json");
    std::fs::write(&other, "{\"hello\": 1}").unwrap();
    assert!(Model::load(&other)
        .unwrap_err()
        .to_string()
        .contains("not an autozeekwatch model"));

    let out = train(&["--inspect", cut.to_str().unwrap()]);
    assert!(!out.status.success());
}

fn shared(rel: &str) -> PathBuf {
    crate::util::shared_data().join(rel)
}

/// Sum of the `records` column of FILES.tsv for paths matching a filter.
fn corpus_records(filter: impl Fn(&str) -> bool) -> u64 {
    let table = std::fs::read_to_string(crate::util::shared_data().join("FILES.tsv")).unwrap();
    table
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|c| filter(c[0]))
        .map(|c| c[5].parse::<u64>().unwrap())
        .sum()
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data beside the repository"
)]
fn date_range_selects_days_of_rita_missing_host() {
    let dir = shared("rita-activecm/missing_host");
    let out = train(&[
        "--log-dir",
        dir.to_str().unwrap(),
        "--modules",
        "ALL",
        "--start-date",
        "2024-04-20",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let s = text(&out);
    for module in LogKind::CLASSIC {
        let log = module.log_path();
        let expected = corpus_records(|p| {
            p.starts_with("rita-activecm/missing_host/2024-04-2")
                && !p.contains("2024-04-19")
                && Path::new(p)
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{log}."))
        });
        if expected == 0 {
            continue;
        }
        assert!(
            s.contains(&format!("{module}: ")) && s.contains(&format!(" {expected} records,")),
            "{module}: {expected} expected in\n{s}"
        );
        assert!(!s.contains("2024-04-19/"), "the first day is excluded");
    }
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data beside the repository"
)]
fn trains_every_module_present_in_rita_missing_host() {
    let dir = shared("rita-activecm/missing_host");
    let models = tempfile::tempdir().unwrap();
    let out = train(&[
        "--log-dir",
        dir.to_str().unwrap(),
        "--modules",
        "ALL",
        "--model-dir",
        models.path().to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for module in LogKind::CLASSIC {
        let (model, _) = Model::load(&models.path().join(model::file_name(module))).unwrap();
        let expected = corpus_records(|p| {
            p.starts_with("rita-activecm/missing_host/")
                && Path::new(p)
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{}.", module.log_path()))
        });
        assert_eq!(
            model.training.records, expected,
            "{module}: every record is read"
        );
    }
}

/// A model file without what differs between two runs on the same data
/// and seed: when it was written, how long it took, and the checksum over
/// both.
fn model_without_times(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("created");
    o.remove("checksum");
    o["training"].as_object_mut().unwrap().remove("seconds");
    v
}

/// `--max-records`: DNS has 5,300 example records; a sample of 1,000 is
/// what KitNET trains on and the threshold rests on, the summary and
/// `--inspect` say so, the same seed gives the same model, another seed
/// another sample, and a bound above the history changes nothing.
#[test]
fn max_records_trains_on_a_sample_and_says_so() {
    let logs = root().join("examples/logs");
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let models = dir.path().join(name);
        let mut args = vec![
            "--log-dir",
            logs.to_str().unwrap(),
            "--modules",
            "dns",
            "--model-dir",
            models.to_str().unwrap(),
            "--min-records",
            "20",
        ];
        args.extend_from_slice(extra);
        let out = train(&args);
        assert!(out.status.success(), "{}", text(&out));
        (models.join("dns.model.json"), text(&out))
    };

    let (a, said) = run("a", &["--max-records", "1000"]);
    assert!(
        said.contains("DNS: sampled 1000 of 5300 records (--max-records 1000, seed 1234)"),
        "{said}"
    );
    let (model, _) = Model::load(&a).unwrap();
    let t = &model.training;
    assert_eq!(t.records, 5300, "every record read");
    assert_eq!(t.trained_records + t.held_out_records, 1000, "the sample");
    assert!(
        t.held_out_records >= 50 && t.trained_records >= 800,
        "{t:?}"
    );
    let sample = t.sample.as_ref().expect("the model records its sample");
    assert_eq!(
        (sample.sampled, sample.max_records, sample.seed),
        (1000, 1000, 1234)
    );
    // The later passes select what the survey counted: the feature map
    // (all of a sample smaller than its grace) and the threshold pass.
    assert_eq!(
        t.feature_map_records, t.trained_records,
        "the feature map pass's sample"
    );
    assert_eq!(
        model.threshold.scores, t.held_out_records,
        "scored: the sample's held-out records"
    );
    assert!(model
        .threshold
        .method
        .contains("in a sample of 1000 of 5300 records"));
    let shown = text(&train(&["--inspect", a.to_str().unwrap()]));
    assert!(shown.contains("sampled 1000 of 5300 records"), "{shown}");

    let (b, _) = run("b", &["--max-records", "1000"]);
    assert_eq!(
        model_without_times(&a),
        model_without_times(&b),
        "same seed, same model"
    );
    let (c, _) = run("c", &["--max-records", "1000", "--seed", "99"]);
    assert_ne!(
        model_without_times(&a)["kitnet"],
        model_without_times(&c)["kitnet"]
    );

    // A bound the history does not reach samples nothing: the model is the
    // one trained without it.
    let (full, _) = run("full", &[]);
    let (over, said) = run("over", &["--max-records", "6000"]);
    assert!(
        said.contains("DNS: sampled 5300 of 5300 records (all of them"),
        "{said}"
    );
    assert_eq!(model_without_times(&full), model_without_times(&over));
    assert!(Model::load(&full).unwrap().0.training.sample.is_none());

    let out = train(&["--log-dir", logs.to_str().unwrap(), "--max-records", "5"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--max-records 5"), "{}", text(&out));
    let help = text(&train(&["--help"]));
    assert!(
        help.contains("--max-records <N>") && help.contains("uniform sample"),
        "{help}"
    );
}

/// A model folder that cannot be written fails before any training (it
/// used to fail after all of it, hours on a week of history, naming a
/// temporary file and its cause twice).
#[test]
fn an_unwritable_model_folder_fails_before_training() {
    let dir = crate::util::tempdir("train-unwritable");
    // Root writes anywhere: a folder under a regular file cannot be made.
    std::fs::write(dir.join("file"), b"").unwrap();
    let models = dir.join("file/models");
    let out = train(&[
        "--log-dir",
        root().join("examples/logs").to_str().unwrap(),
        "--modules",
        "conn",
        "--model-dir",
        models.to_str().unwrap(),
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("cannot write models in"), "{all}");
    assert!(all.contains("nothing was trained"), "{all}");
    assert!(!all.contains("training on"), "{all}");
}

/// What azw-train replaces at a model's path is its own: another
/// program's file there is refused, and a folder too, before training;
/// an older model of ours is replaced.
#[test]
fn a_file_not_ours_at_a_model_path_is_never_replaced() {
    let dir = crate::util::tempdir("train-not-ours");
    let models = dir.join("models");
    std::fs::create_dir_all(models.join("dns.model.json")).unwrap();
    let theirs = b"someone's notes, not a model\n";
    std::fs::write(models.join("conn.model.json"), theirs).unwrap();
    for module in ["conn", "dns"] {
        let out = train(&[
            "--log-dir",
            root().join("examples/logs").to_str().unwrap(),
            "--modules",
            module,
            "--model-dir",
            models.to_str().unwrap(),
        ]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains("not a model autozeekwatch wrote"), "{all}");
        assert!(all.contains(&format!("{module}.model.json")), "{all}");
        assert!(!all.contains("training on"), "{all}");
    }
    assert_eq!(
        std::fs::read(models.join("conn.model.json")).unwrap(),
        theirs
    );
    assert!(models.join("dns.model.json").is_dir());
    // Ours (here one written by this test's training) is replaced.
    std::fs::remove_file(models.join("conn.model.json")).unwrap();
    for _ in 0..2 {
        let out = train(&[
            "--log-dir",
            root().join("examples/logs").to_str().unwrap(),
            "--modules",
            "conn",
            "--model-dir",
            models.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
}
