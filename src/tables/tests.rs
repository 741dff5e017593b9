use super::*;

fn parse(text: &str) -> Result<Table, TableError> {
    Table::parse(
        LogKind::new("myapp").unwrap(),
        text,
        Path::new("/etc/azw/myapp.toml"),
        TableOrigin::BuiltIn,
    )
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn every_built_in_table_reads_and_covers_what_the_python_tool_used() {
    let tables = Tables::built_in();
    let has = |m, f: &str| built_in(m).features.iter().any(|d| d.field == f);
    for f in [
        "conn_state",
        "proto",
        "service",
        "local_orig",
        "local_resp",
        "missed_bytes",
        "orig_pkts",
        "orig_ip_bytes",
        "resp_pkts",
        "resp_ip_bytes",
        "duration",
        "history",
        "id.resp_p",
    ] {
        assert!(has(LogKind::CONN, f), "conn {f}");
    }
    for f in [
        "rtt", "AA", "TC", "RD", "RA", "rejected", "qclass", "qtype", "rcode", "proto", "query",
        "answers",
    ] {
        assert!(has(LogKind::DNS, f), "dns {f}");
    }
    for f in [
        "trans_depth",
        "request_body_len",
        "response_body_len",
        "host",
        "method",
        "status_code",
        "version",
        "uri",
        "user_agent",
    ] {
        assert!(has(LogKind::HTTP, f), "http {f}");
    }
    for f in [
        "auth_success",
        "auth_attempts",
        "direction",
        "version",
        "client",
        "server",
    ] {
        assert!(has(LogKind::SSH, f), "ssh {f}");
    }
    for f in [
        "resumed",
        "established",
        "cert_chain_fps",
        "sni_matches_cert",
        "version",
        "cipher",
        "curve",
        "server_name",
        "ssl_history",
    ] {
        assert!(has(LogKind::SSL, f), "ssl {f}");
    }
    for m in tables.kinds() {
        let t = tables.get(m).unwrap();
        assert_eq!(t.origin, TableOrigin::BuiltIn);
        assert!(!t.description.is_empty(), "{m} has a description");
        let mut names: Vec<_> = t.features.iter().map(|d| &d.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            t.features.len(),
            "{m}: feature names are unique"
        );
    }
    for m in LogKind::CLASSIC {
        assert!(
            built_in(m)
                .features
                .iter()
                .any(|d| d.transform == Transform::Direction),
            "{m} direction"
        );
    }
}

#[test]
fn a_table_reads_every_transform_and_defaults_the_name_to_the_field() {
    let t = parse(
        r#"
description = "a login"
features = [
  { field = "user", transform = "rarity" },
  { name = "user_given_host", field = "user", transform = "rarity", given = ["id.orig_h"] },
  { field = "bytes", transform = "log1p" },
  { field = "method", transform = "category", max_values = 8 },
  { field = "flags", transform = "chars", chars = "ABC" },
]
"#,
    )
    .unwrap();
    assert_eq!(t.description, "a login");
    assert_eq!(t.features[0].name, "user");
    assert_eq!(
        t.features[1].transform,
        Transform::Rarity {
            given: vec!["id.orig_h".into()]
        }
    );
    assert_eq!(
        t.features[3].transform,
        Transform::Category { max_values: 8 }
    );
    for name in Transform::NAMES {
        let extra = match name {
            "chars" => ", chars = \"x\"",
            "category" => ", max_values = 3",
            "interval" => ", to = \"g\"",
            "damped" | "gap" | "distinct" => ", by = [\"id.orig_h\"], half_lives = [60]",
            "first_seen" => ", by = [\"id.orig_h\"]",
            _ => "",
        };
        let text = format!("features = [{{ field = \"f\", transform = \"{name}\"{extra} }}]");
        parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn context_transforms_read_their_key_and_half_lives_and_say_what_is_wrong() {
    let t = parse(
        r#"features = [
  { name = "pair_gap", field = "id.resp_h", transform = "gap", by = ["id.orig_h"], half_lives = [600, 3600], max_keys = 5000, min_gap = 60 },
  { name = "domain_new", field = "query", transform = "first_seen", by = ["id.orig_h"], domain = true },
]"#,
    )
    .unwrap();
    let Transform::Context(c) = &t.features[0].transform else {
        panic!("{:?}", t.features[0].transform)
    };
    assert_eq!(c.by, ["id.orig_h"]);
    assert_eq!(c.half_lives, [600, 3600]);
    assert_eq!(c.max_keys, 5000);
    assert_eq!(c.min_gap, 60);
    assert!(c
        .describe("id.resp_h")
        .contains("gaps of 1m or more (between sessions)"));
    assert_eq!(
        c.column_suffixes(),
        [
            ":gap",
            "@10m:weight",
            "@10m:mean",
            "@10m:cv",
            "@1h:weight",
            "@1h:mean",
            "@1h:cv"
        ]
    );
    let Transform::Context(c) = &t.features[1].transform else {
        panic!()
    };
    assert!(c.domain);
    assert_eq!(
        c.key_fields("query").collect::<Vec<_>>(),
        ["id.orig_h", "query"]
    );
    for (line, want) in [
        (
            r#"{ field = "orig_bytes", transform = "damped", half_lives = [60] }"#,
            "`features[0].by` names the key's fields (1 to 3)",
        ),
        (
            r#"{ field = "orig_bytes", transform = "damped", by = ["id.orig_h"] }"#,
            "`features[0].half_lives` takes 1 to 3 half-lives in seconds",
        ),
        (
            r#"{ field = "x", transform = "gap", by = ["a"], half_lives = [0] }"#,
            "must be 1 s to a year each",
        ),
        (
            r#"{ field = "x", transform = "gap", by = ["a"], half_lives = [60], max_keys = 1 }"#,
            "`features[0].max_keys` must be 8 to",
        ),
        (
            r#"{ field = "x", transform = "log1p", by = ["a"] }"#,
            "`features[0].by` does not apply to `log1p`",
        ),
        (
            r#"{ field = "x", transform = "damped", by = ["a"], half_lives = [60], min_gap = 60 }"#,
            "`features[0].min_gap` does not apply to `damped`",
        ),
        (
            r#"{ field = "x", transform = "gap", by = ["a"], half_lives = [60], min_gap = 90000 }"#,
            "`features[0].min_gap` must be 0 to 86400 seconds",
        ),
    ] {
        let e = err(&format!("features = [\n  {line},\n]\n"));
        assert!(e.contains(want), "{line}: {e}");
        assert!(e.starts_with("/etc/azw/myapp.toml:2:"), "{e}");
    }
}

#[test]
fn errors_name_the_file_the_line_and_the_key() {
    let e = err("description = \"x\"\nfeatures = [\n  { field = \"a\", transform = \"log1p\" },\n  { field = \"b\", transform = \"logarithm\" },\n]\n");
    assert!(
        e.starts_with("/etc/azw/myapp.toml:4: `features[1].transform` unknown transform `logarithm`: choose from number, log1p"),
        "{e}"
    );
    let e = err("features = [\n  { field = \"a\", transform = \"category\" },\n]\n");
    assert!(
        e.contains(":2: `features[0].max_values` is required by `category`"),
        "{e}"
    );
    let e = err("features = [\n  { field = \"a\", transform = \"log1p\",\n max_values = 3 },\n]\n");
    assert!(
        e.contains(":3: `features[0].max_values` does not apply to `log1p`"),
        "{e}"
    );
    let e = err("features = [\n  { field = \"a\", transform = \"log1p\", kind = \"x\" },\n]\n");
    assert!(
        e.contains("myapp.toml:2: ") && e.contains("unknown field `kind`"),
        "{e}"
    );
    let e = err("features = [\n  { field = \"a\", transform = \"log1p\" },\n  { field = \"a\", transform = \"flag\" },\n]\n");
    assert!(
        e.contains(":3: `features[1].name` `a` is already the name of the feature on line 2"),
        "{e}"
    );
    let e = err("features = []\n");
    assert!(e.contains(":1: `features` is empty"), "{e}");
    let e = err("features = [\n  { field = \"a\", transform = \"rarity\", given = [\"x\", \"y\", \"z\"] },\n]\n");
    assert!(
        e.contains("`features[0].given` names at most 2 fields"),
        "{e}"
    );
    let e = err("features = [ { field = \"a\", transform = 3 } ]\n");
    assert!(e.contains("myapp.toml:1: "), "{e}");
    let e =
        err("description = \"x\"\nfeatures = [\n  { field = \"a\" transform = \"log1p\" },\n]\n");
    assert!(e.contains("myapp.toml:3: "), "{e}");
}

#[test]
fn a_folder_adds_and_replaces_tables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("myapp.toml"),
        "features = [{ field = \"user\", transform = \"rarity\" }]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("dns.toml"),
        "features = [{ field = \"query\", transform = \"length\" }]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "not a table").unwrap();
    let t = Tables::with_dir(dir.path()).unwrap();
    let myapp = LogKind::new("myapp").unwrap();
    assert_eq!(t.get(myapp).unwrap().features.len(), 1);
    let dns = t.get(LogKind::DNS).unwrap();
    assert_eq!(dns.features.len(), 1);
    assert!(dns
        .origin
        .to_string()
        .ends_with("dns.toml (replaces the built-in table)"));
    assert_eq!(t.get(LogKind::CONN), built_in_opt(LogKind::CONN));
    assert_eq!(
        t.parse_modules(&["MyApp,conn"]).unwrap(),
        [myapp, LogKind::CONN]
    );
    assert!(t.parse_modules(&["all"]).unwrap().contains(&myapp));
    let e = Tables::built_in()
        .parse_modules(&["myapp"])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("unknown module `myapp`: choose from CONN, CONN_LONG, DHCP, DNS"),
        "{e}"
    );

    std::fs::write(dir.path().join("bad name.toml"), "features = []").unwrap();
    let e = Tables::with_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("bad name.toml: the file name must be the log's path"),
        "{e}"
    );
    assert!(Tables::with_dir(&dir.path().join("missing")).is_err());
}

fn built_in_opt(log: LogKind) -> Option<&'static Table> {
    Tables::built_in().get(log)
}

/// The line index says what counting from the top says.
#[test]
fn lines_name_what_line_of_names() {
    use crate::tables::{line_of, Lines};
    for text in ["", "a", "a\n", "a\nb\n\nc", "\n\n\n"] {
        let lines = Lines::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(
                lines.of(offset),
                line_of(text, offset),
                "{text:?} at {offset}"
            );
        }
    }
}
