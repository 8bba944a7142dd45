//! Arbitrary bytes into what `chouette dead` reads back from a dead-letter queue
//! (`cli/dead.rs`): `parse_envelope` and `decode_base64`.
//!
//! Asserts, besides no panic:
//! - an envelope read is written again by the store (`dead_letter_envelope`) and reads back with
//!   the same reason and value;
//! - any bytes, as a refused value, round-trip exactly through the store's envelopes (the plain
//!   and the `too_large` one, with its `size`), UTF-8 or not (then through `value_base64`);
//! - base64 accepted decodes to three bytes per four characters less the padding, and the
//!   store's encoding of those bytes decodes to them again.
#![no_main]

use chouette_agent::cli::dead::{decode_base64, parse_envelope};
use chouette_agent::store::{dead_letter_envelope, encode_base64, oversize_envelope, DeadRecord, Queue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(envelope) = parse_envelope(data) {
        let value = envelope.value.clone().unwrap_or_default();
        let record =
            DeadRecord { id: b"id".to_vec(), score: 1.0, value: value.clone(), reason: envelope.reason };
        let again =
            parse_envelope(&dead_letter_envelope(Queue::Logs, &record)).expect("the store's envelope reads");
        assert_eq!(again.reason, record.reason);
        assert_eq!(again.value, Some(value));
        assert_eq!(again.queue.as_deref(), Some(Queue::Logs.prefix()));
    }

    let reason = String::from_utf8_lossy(data).into_owned();
    let record = DeadRecord { id: data.to_vec(), score: 0.0, value: data.to_vec(), reason };
    let plain = parse_envelope(&dead_letter_envelope(Queue::RawMetrics, &record))
        .expect("the store's envelope reads");
    assert_eq!(
        (plain.reason.as_str(), plain.value.as_deref(), plain.size),
        (record.reason.as_str(), Some(data), None)
    );
    let big =
        parse_envelope(&oversize_envelope(Queue::RawMetrics, data)).expect("the store's envelope reads");
    assert_eq!((big.reason.as_str(), big.value.as_deref()), ("too_large", Some(data)));
    assert_eq!(big.size, Some(data.len() as u64));

    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(decoded) = decode_base64(text) {
        let pad = text.bytes().rev().take_while(|&c| c == b'=').count();
        assert_eq!(decoded.len(), text.len() / 4 * 3 - pad);
        assert_eq!(decode_base64(&encode_base64(&decoded)), Some(decoded));
    }
});
