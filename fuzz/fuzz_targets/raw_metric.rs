//! Raw-metric parser: never panics; whatever it accepts satisfies the documented limits, and the
//! documented scratch size always suffices.
#![no_main]

use chouette_core::limits::{MAX_NAME_BYTES, MAX_TAGS, MAX_TAG_BYTES};
use chouette_core::wire::raw::{parse_raw_metric, raw_scratch_len};
use chouette_core::wire::ParseError;
use chouette_core::Value;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut scratch = vec![0u8; raw_scratch_len(data.len())];
    match parse_raw_metric(data, &mut scratch) {
        Ok(m) => {
            assert!(!m.name.is_empty() && m.name.len() <= MAX_NAME_BYTES);
            assert!(m.tags.len() <= MAX_TAGS);
            for tag in &m.tags {
                assert!(tag.encoded_len() <= MAX_TAG_BYTES + 1);
            }
            assert!(m.timestamp.as_secs_f64().is_finite() && m.timestamp.as_secs_f64() >= 0.0);
            match m.value {
                Value::Number(v) => assert!(v.is_finite()),
                Value::Set(members) => {
                    let _ = members.iter().count();
                }
                Value::Samples(samples) => {
                    assert!(samples.iter().all(|s| matches!(s, chouette_core::Member::Num(v) if v.is_finite())));
                    assert!(!samples.is_empty());
                }
            }
            let _ = m.sample();
        }
        Err(ParseError::ScratchTooSmall { .. }) => panic!("documented scratch size too small"),
        Err(e) => {
            let _ = e.reason();
        }
    }
    // A smaller scratch either works or says so.
    let mut small = [0u8; 16];
    let _ = parse_raw_metric(data, &mut small);
});
