//! Link payloads: any bytes as a data, define, hello, ack, nack or time payload never panic; a
//! data payload's records re-encode (counts, gauges, sets, samples, summaries) and sketches
//! rebuild or are refused, never accepted half-way.
#![no_main]

use chouette_core::link::message::{
    self, Ack, DataHeader, DataReader, DataWriter, Define, Hello, Nack, TimeRequest, TimeResponse, Value,
};
use chouette_core::link::MAX_PAYLOAD;
use chouette_core::sketch::QuantileSketch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = message::decode::<Define<'_>>(data);
    let _ = message::decode::<Hello<'_>>(data);
    let _ = message::decode::<Ack>(data);
    let _ = message::decode::<Nack>(data);
    let _ = message::decode::<TimeRequest>(data);
    let _ = message::decode::<TimeResponse>(data);
    let Ok(reader) = DataReader::new(data) else { return };
    let header: DataHeader = reader.header;
    let mut out = [0u8; 4 * MAX_PAYLOAD];
    let Ok(mut writer) = DataWriter::new(&mut out, header) else { return };
    for record in reader {
        let Ok(record) = record else { break };
        match record.value {
            Value::Sketch(bins) => {
                // Either a consistent sketch or a refusal.
                let _ = bins.to_sketch::<1000>().map(|s: QuantileSketch<1000>| s.count());
            }
            Value::Samples(samples) => assert!(samples.iter().all(f64::is_finite)),
            value => {
                let _ = writer.push(record.ctx, &value);
            }
        }
    }
});
