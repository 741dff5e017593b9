//! The site's networks: learned from Zeek's `local_orig`/`local_resp` for
//! every module, given with `--local-nets`, or the private defaults with a
//! warning when the traffic contradicts them; `--inspect` says which.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;

use autozeekwatch::model::Model;

use crate::util::{root, tempdir};

const SENSOR: &str = "64.225.56.201";
const DAY: &str = "2024-04-19";

/// The fixture's files, copied into `dir/DAY/`; `unmark` unsets the conn
/// log's `local_orig`/`local_resp` (Zeek without `Site::local_nets`).
fn history(dir: &Path, unmark: bool) {
    let src = root().join("tests/data/site").join(DAY);
    let day = dir.join(DAY);
    fs::create_dir_all(&day).unwrap();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !(unmark && name.starts_with("conn.")) {
            fs::copy(&path, day.join(&name)).unwrap();
            continue;
        }
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(fs::File::open(&path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let fields: Vec<&str> = text
            .lines()
            .find_map(|l| l.strip_prefix("#fields\t"))
            .unwrap()
            .split('\t')
            .collect();
        let marks: Vec<usize> = ["local_orig", "local_resp"]
            .iter()
            .map(|f| fields.iter().position(|x| x == f).unwrap())
            .collect();
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with('#') {
                out.push_str(line);
            } else {
                let mut cols: Vec<&str> = line.split('\t').collect();
                for m in &marks {
                    cols[*m] = "-";
                }
                out.push_str(&cols.join("\t"));
            }
            out.push('\n');
        }
        let name = name.trim_end_matches(".gz");
        fs::File::create(day.join(name))
            .unwrap()
            .write_all(out.as_bytes())
            .unwrap();
    }
}

fn train(logs: &Path, models: &Path, extra: &[&str]) -> Output {
    let out = crate::util::succeed(
        crate::util::azw_train()
            .args(["--log-dir", logs.to_str().unwrap()])
            .args(["--modules", "CONN,HTTP", "--model-dir"])
            .arg(models)
            .args(extra),
    );
    out
}

fn inspect(path: &Path) -> String {
    let out = crate::util::azw_train()
        .arg("--inspect")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn sensor_is_local(model: &Path) -> bool {
    let (m, _) = Model::load(model).unwrap();
    m.features.local_nets.contains(SENSOR.parse().unwrap())
}

/// HTTP logs carry no marks: the HTTP model gets the site from conn's.
#[test]
fn every_module_learns_the_site_from_zeeks_marks() {
    let logs = tempdir("site-logs");
    let models = tempdir("site-models");
    history(&logs, false);
    let out = train(&logs, &models, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("outside the local networks"), "{stderr}");
    for module in ["conn", "http"] {
        let path = models.join(format!("{module}.model.json"));
        assert!(sensor_is_local(&path), "{module}");
        let shown = inspect(&path);
        assert!(
            shown.contains("learned from Zeek's local_orig/local_resp"),
            "{shown}"
        );
        assert!(shown.contains(&format!("{SENSOR}/32")), "{shown}");
    }
    let (m, _) = Model::load(&models.join("conn.model.json")).unwrap();
    assert!(
        !m.features
            .local_nets
            .contains("64.225.56.202".parse().unwrap()),
        "one public host is not its /24"
    );
}

/// Without Zeek's marks, the defaults call the sensor external; training
/// says so, names the address and the flag that declares it.
#[test]
fn a_public_sensor_without_marks_is_named_with_the_flag_that_declares_it() {
    let logs = tempdir("site-unmarked");
    let models = tempdir("site-unmarked-models");
    history(&logs, true);
    let out = train(&logs, &models, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for module in ["CONN", "HTTP"] {
        let warning = stderr
            .lines()
            .find(|l| {
                l.contains(&format!("{module}: ")) && l.contains("outside the local networks")
            })
            .unwrap_or_else(|| panic!("no {module} warning in {stderr}"));
        assert!(
            warning.contains(&format!("{SENSOR} takes part in")),
            "{warning}"
        );
        assert!(
            warning.contains(&format!("--local-nets {SENSOR}/32")),
            "{warning}"
        );
    }
    let path = models.join("http.model.json");
    assert!(!sensor_is_local(&path));
    assert!(inspect(&path).contains("the private defaults"));

    // Declared, it is local and nothing is said.
    let declared = tempdir("site-declared-models");
    let net = format!("{SENSOR}/32,10.0.0.0/8");
    let out = train(&logs, &declared, &["--local-nets", &net]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("outside the local networks"), "{stderr}");
    let path = declared.join("http.model.json");
    assert!(sensor_is_local(&path));
    assert!(inspect(&path).contains("given by --local-nets"));
}

/// Networks given that miss what Zeek marks local are named.
#[test]
fn given_networks_that_miss_zeeks_local_addresses_are_named() {
    let logs = tempdir("site-given");
    let models = tempdir("site-given-models");
    history(&logs, false);
    let out = train(&logs, &models, &["--local-nets", "10.0.0.0/8"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("that --local-nets does not hold") && stderr.contains(SENSOR),
        "{stderr}"
    );
    assert!(!sensor_is_local(&models.join("conn.model.json")));
}
