//! A log file's bytes through the reader alone (decompression, format
//! detection, the header, every field's type): the replay target's first
//! stage, a thousand times faster, so its mutations reach deeper into
//! the parser. The first byte picks the log type expected (or none), and
//! the line cap, small enough that mutations reach it.
#![no_main]

use autozeekwatch::zeek::LogReader;
use autozeekwatch::LogKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let expected = [
        None,
        Some(LogKind::CONN),
        Some(LogKind::DNS),
        Some(LogKind::HTTP),
    ][usize::from(pick & 3)]
    .map(LogKind::log_path);
    let max_line = if pick & 4 == 0 { 1 << 20 } else { 300 };
    let Ok(reader) =
        LogReader::from_reader("fuzz.log", std::io::Cursor::new(file.to_vec()), expected)
    else {
        return;
    };
    let mut reader = reader.with_max_line(max_line).quiet();
    let mut records = 0u64;
    for record in reader.by_ref().flatten() {
        records += 1;
        // What the features and sinks ask of every record.
        let _ = record.get("ts");
        let _ = record.get("id.orig_h");
        let _ = record.get("_path");
    }
    let stats = reader.stats();
    assert_eq!(stats.records, records, "{stats:?}");
    assert!(stats.lines >= stats.records + stats.malformed, "{stats:?}");
});
