//! Serial devices: microcontrollers that aggregate with the core and forward closed intervals
//! over a serial line (`docs/link.md`).
//!
//! - [`session`]: one device's link, gateway side, sans-IO (frames, acks, time, points).
//! - [`source`]: the [`Source`](crate::source::Source): a thread per device, commits in the
//!   run loop.

pub mod session;
pub mod source;

use chouette_core::metric::MetricType;
use chouette_core::wire::raw::Number;

use crate::pipeline::IdGenerator;
use crate::store::NewRecord;
use source::DeviceReport;

/// The counters a device's self-metrics last reported (they are sent as deltas).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reported {
    frames_accepted: u64,
    crc_failures: u64,
    resyncs: u64,
    duplicates: u64,
    gaps: u64,
    points: u64,
    time_fallbacks: u64,
    disconnects: u64,
}

/// `chouette status` fields of one device: `serial.<device>.<field>`.
pub fn status_fields(device: &str, report: &DeviceReport) -> Vec<(String, String)> {
    let s = &report.session;
    let mut fields = vec![
        ("connected", u64::from(report.connected).to_string()),
        ("connects", report.connects.to_string()),
        ("disconnects", report.disconnects.to_string()),
        ("bytes_in", report.bytes_in.to_string()),
        ("frames_accepted", s.frames_accepted.to_string()),
        ("points", s.points.to_string()),
        ("crc_failures", s.crc_failures.to_string()),
        ("resyncs", s.resyncs.to_string()),
        ("duplicates", s.duplicates.to_string()),
        ("gaps", s.gaps.to_string()),
        ("resync_requests", s.resync_requests.to_string()),
        ("malformed", s.malformed.to_string()),
        ("time_fallbacks", s.time_fallbacks.to_string()),
        ("merged_intervals", s.device.merged_intervals.to_string()),
        ("dropped_intervals", s.device.dropped_intervals.to_string()),
        ("refused_samples", s.device.refused_samples.to_string()),
        ("coarsened", s.device.coarsened.to_string()),
        ("device_resyncs", s.device.resyncs.to_string()),
        ("clock_offset_ms", s.clock_offset_ms.map_or_else(|| "none".to_owned(), |o| o.to_string())),
        ("clock_rtt_ms", s.clock_rtt_ms.map_or_else(|| "none".to_owned(), |o| o.to_string())),
    ];
    if let Some(name) = &s.name {
        fields.push(("name", name.clone()));
    }
    if let Some(error) = &report.last_error {
        fields.push(("last_error", error.clone()));
    }
    fields.into_iter().map(|(k, v)| (format!("serial.{device}.{k}"), v)).collect()
}

/// Self-metrics of one device (`chouette.serial.*`, tag `device:<device>`): counters as counts
/// since the last report, the device's totals and the clock offset as gauges.
pub fn self_metric_records(
    device: &str,
    report: &DeviceReport,
    previous: &mut Reported,
    now: f64,
    ids: &mut IdGenerator,
) -> Vec<NewRecord> {
    let s = &report.session;
    let current = Reported {
        frames_accepted: s.frames_accepted,
        crc_failures: s.crc_failures,
        resyncs: s.resyncs,
        duplicates: s.duplicates,
        gaps: s.gaps,
        points: s.points,
        time_fallbacks: s.time_fallbacks,
        disconnects: report.disconnects,
    };
    let tags = [("device", device)];
    let mut out = Vec::new();
    let mut push = |name: &str, kind: MetricType, value: f64| {
        if let Some(value) = crate::pipeline::raw_record(name, kind, Number::Float(value), now, &tags) {
            out.push(NewRecord { id: ids.next_id().to_vec(), score: now, value });
        }
    };
    let counts = [
        ("chouette.serial.frames_accepted", current.frames_accepted, previous.frames_accepted),
        ("chouette.serial.crc_failures", current.crc_failures, previous.crc_failures),
        ("chouette.serial.resyncs", current.resyncs, previous.resyncs),
        ("chouette.serial.duplicates", current.duplicates, previous.duplicates),
        ("chouette.serial.gaps", current.gaps, previous.gaps),
        ("chouette.serial.points", current.points, previous.points),
        ("chouette.serial.time_fallbacks", current.time_fallbacks, previous.time_fallbacks),
        ("chouette.serial.disconnects", current.disconnects, previous.disconnects),
    ];
    for (name, now_value, before) in counts {
        push(name, MetricType::Count, now_value.saturating_sub(before) as f64);
    }
    push("chouette.serial.merged_intervals", MetricType::Gauge, f64::from(s.device.merged_intervals));
    push("chouette.serial.dropped_intervals", MetricType::Gauge, f64::from(s.device.dropped_intervals));
    if let Some(offset) = s.clock_offset_ms {
        push("chouette.serial.clock_offset_ms", MetricType::Gauge, offset as f64);
    }
    *previous = current;
    out
}
