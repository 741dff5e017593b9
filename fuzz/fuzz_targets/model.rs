//! A model file damaged on disk, or edited by hand: it loads and scores,
//! or loading refuses it with an error; never a panic in loading, nor
//! later in scoring a record with a model that loading accepted.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use autozeekwatch::model::Model;
use autozeekwatch::score::Scorer;
use autozeekwatch::zeek::{LineParser, Parsed, Record};
use libfuzzer_sys::fuzz_target;

/// A conn record of the example logs, in JSON.
fn record() -> &'static Record {
    static RECORD: OnceLock<Record> = OnceLock::new();
    RECORD.get_or_init(|| {
        let line = br#"{"ts":1759875843.9,"uid":"CdbKFG2tlCYixmRU5d","id.orig_h":"192.168.1.5","id.orig_p":50413,"id.resp_h":"8.8.8.8","id.resp_p":53,"proto":"udp","service":"dns","duration":0.02,"orig_bytes":40,"resp_bytes":56,"conn_state":"SF","missed_bytes":0,"history":"Dd","orig_pkts":1,"orig_ip_bytes":68,"resp_pkts":1,"resp_ip_bytes":84}"#;
        match LineParser::new("conn.log", Some("conn")).parse_line(line, 1) {
            Ok(Parsed::Record(r)) => r,
            other => panic!("the example record does not parse: {other:?}"),
        }
    })
}

fn scratch() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::temp_dir().join(format!("azw-fuzz-model-{}.json", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(scratch(), data).expect("scratch file");
    let Ok((model, encoder)) = Model::load(scratch()) else {
        return;
    };
    let mut scorer = Scorer::new(model, encoder);
    let _ = scorer.score(record());
});
