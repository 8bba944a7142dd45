//! Log parser and intake encoder: never panic, and the intake form is itself a valid record.
#![no_main]

use chouette_core::wire::log::{encode_log_for_intake, parse_log};
use chouette_core::Tag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rec) = parse_log(data) else { return };
    let mut out = vec![0u8; 256 + 2 * data.len()];
    let n = encode_log_for_intake(&rec, &[Tag::new("env", "fuzz")], Some("h\u{e9}"), &mut out)
        .expect("a parsed record encodes");
    let again = parse_log(&out[..n]).expect("the intake form parses");
    assert_eq!(again.date(), rec.date());
    assert_eq!(again.field("host"), Some("\"h\\u00e9\""));
});
