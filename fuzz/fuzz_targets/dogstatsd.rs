//! DogStatsD parser: any bytes never panic; every parsed message re-renders into text that parses
//! back to the same message, and renders again to the same bytes.
#![no_main]

use chouette_core::wire::dogstatsd::{parse_datagram, parse_message, render, Message, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = vec![0u8; data.len() * 4 + 64];
    for line in parse_datagram(data) {
        let Ok(message) = line.result else {
            let _ = line.result.map_err(|e| e.reason());
            continue;
        };
        if let Message::Metric { values, .. } = &message {
            assert!(values.iter().count() >= 1);
            for v in values.iter() {
                if let Value::Number(n) = v {
                    assert!(n.is_finite());
                }
            }
        }
        let n = render(&message, &mut buf).expect("a rendering fits in four times the input");
        let again = parse_message(&buf[..n]).expect("a rendering parses");
        assert_eq!(again, message);
        let mut second = vec![0u8; n];
        let m = render(&again, &mut second).expect("same size");
        assert_eq!(&buf[..n], &second[..m]);
    }
});
