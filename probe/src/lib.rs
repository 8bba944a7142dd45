//! Calls chouette-core's no-heap API from a `#![no_std]` staticlib without an allocator.
#![no_std]

use core::panic::PanicInfo;

use chouette_core::aggregate::{AggregatorConfig, SmallAggregator};
use chouette_core::id::IdGenerator;
use chouette_core::keys;
use chouette_core::metric::{MetricType, Sample, Tag, Timestamp, Value};
use chouette_core::wire::raw::{encode_raw_metric, Number, RawRecord, RawValue};
use chouette_core::wire::write::Writer;
use chouette_core::wrap::WrapConfig;

#[panic_handler]
fn panic(_info: &PanicInfo<'_>) -> ! {
    loop {}
}

/// Records a sample, flushes its bucket and writes the points' values into `out`;
/// returns the bytes written.
#[no_mangle]
pub extern "C" fn chouette_probe(now: f64, value: f64, out: *mut u8, out_len: usize) -> usize {
    let _ = (out, out_len);
    let config = AggregatorConfig::DEFAULT;
    let mut aggregator = SmallAggregator::new(config);
    let bucket = config.bucket_of(Timestamp::from_secs_f64(now));
    aggregator.close_before(bucket.start());
    let tags = [Tag::new("board", "probe")];
    let sample = Sample {
        name: "probe.count",
        kind: MetricType::Histogram,
        tags: &tags,
        value: Value::Number(value),
        timestamp: Timestamp::from_secs_f64(now),
    };
    if let Err(refused) = aggregator.record(Timestamp::from_secs_f64(now), sample) {
        if refused.error.is_capacity() {
            return 0;
        }
    }
    aggregator.handle_timeout(config.closes_at(bucket));
    let config = WrapConfig::default();
    let mut buf = [0u8; 512];
    let mut writer = Writer::new(&mut buf);
    while let Some(flushed) = aggregator.poll_flush() {
        for output in flushed.outputs(&config) {
            writer.f64(output.value);
            writer.byte(b',');
        }
    }
    // The raw record a board would queue for the same sample, its id and its key.
    let record = RawRecord {
        name: "probe.count",
        kind: MetricType::Histogram,
        value: RawValue::Number(Number::Float(value)),
        timestamp: now,
        tags: &[("board", "probe")],
    };
    let mut raw = [0u8; 160];
    let raw_len = encode_raw_metric(&record, &mut raw).unwrap_or(0);
    writer.bytes(&IdGenerator::from_seed(now.to_bits()).next_id());
    writer.str(keys::RAW_METRICS.keys);
    writer.bytes(&raw[..raw_len]);
    writer.finish().unwrap_or(0)
}

/// Parses one wrapped record and writes it as InfluxDB lines then OpenTSDB objects into a stack
/// buffer; returns the bytes written (0 on any error).
#[no_mangle]
pub extern "C" fn chouette_probe_outputs() -> usize {
    use chouette_core::wire::{line, opentsdb, wrapped};
    let input = br#"{"metric": "probe", "tags": ["a:b"], "points": [[1, 2.5]], "type": "gauge"}"#;
    let mut scratch = [0u8; 128];
    let Ok(rec) = wrapped::parse_wrapped(input, &mut scratch) else { return 0 };
    let mut buf = [0u8; 256];
    let extra = [Tag::new("env", "probe")];
    let lines = line::encode_lines(&rec, &extra, Some("h"), &mut buf).unwrap_or(0);
    let points =
        opentsdb::encode_points(&rec, &extra, None, opentsdb::Sanitize::Apptuit, &mut buf[lines..]).unwrap_or(0);
    lines + points
}

/// Encodes one link frame and reads it back through a framer, all on the stack; returns the
/// payload length read (0 on any error).
#[no_mangle]
pub extern "C" fn chouette_probe_link(boot_id: u32) -> usize {
    use chouette_core::link::{encode_frame, max_frame_bytes, Framer, Header, Kind};
    let mut wire = [0u8; max_frame_bytes(16)];
    let header = Header { kind: Kind::Data, boot_id, seq: 1 };
    let Ok(n) = encode_frame(header, b"probe\x00payload", &mut wire) else { return 0 };
    let mut framer = Framer::<64>::new();
    let mut got = 0;
    framer.feed(&wire[..n], |frame| {
        if let Ok(frame) = frame {
            got = frame.payload.len();
        }
    });
    got
}
