//! A Kafka message's payload, as the consumer takes it apart before any
//! scoring: the wrapper (`{"conn": {...}}`), the log type it names, the
//! originator it is repartitioned by, and the record parsed by the log
//! type's parser and by the untyped one that reads `_path`. The rest of
//! a record's way is the replay target's.
#![no_main]

use autozeekwatch::kafka::route;
use autozeekwatch::zeek::LineParser;
use autozeekwatch::LogKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let unwrapped = route::unwrap(payload);
    if let Some(log) = &unwrapped.log {
        let _ = route::module_of_log(log, &LogKind::CLASSIC);
    }
    let _ = route::module_of_topic("zeek-conn", &LogKind::CLASSIC);
    if let Some(o) = route::originator(unwrapped.body) {
        assert!(o.len() <= 64, "an originator of {} bytes", o.len());
    }
    // The consumer hands the parsers JSON objects only.
    if !unwrapped.body.trim_ascii_start().starts_with(b"{") {
        return;
    }
    let _ = LineParser::new("kafka", None).parse_line(unwrapped.body, 1);
    for module in LogKind::CLASSIC {
        let _ = LineParser::new("kafka", Some(module.log_path())).parse_line(unwrapped.body, 1);
    }
});
