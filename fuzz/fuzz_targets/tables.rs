//! A feature table an operator wrote (`azw-train --tables DIR`): any
//! text must give a table or an error naming the line, never a panic.
#![no_main]

use std::path::Path;

use autozeekwatch::tables::{Table, TableOrigin};
use autozeekwatch::LogKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for log in [LogKind::CONN, LogKind::DNS, LogKind::HTTP] {
        let origin = TableOrigin::File {
            path: Path::new("fuzz.toml").to_owned(),
            replaces: true,
        };
        if let Err(e) = Table::parse(log, text, Path::new("fuzz.toml"), origin) {
            let _ = e.to_string();
        }
    }
});
