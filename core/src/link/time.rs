//! The time exchange: the device only has uptime; the gateway maps it to wall time.
//!
//! The gateway sends a [`TimeRequest`](super::message::TimeRequest) carrying its wall clock
//! `t0`; the device answers with its uptime `u`; the answer arrives at `t1`. Assuming the two
//! legs take equally long, the device's uptime `u` happened at wall time `(t0 + t1) / 2`, so
//! `offset = (t0 + t1) / 2 - u` and a device time `x` is wall time `x + offset`, within half the
//! round trip `t1 - t0` of the truth (plus the asymmetry of the legs). [`ClockSync`] keeps the
//! last `N` samples and uses the one with the smallest round trip (MAVLink TIMESYNC's filter): a
//! sample delayed by a busy line or a retransmission is never worse than the best one kept.

/// One exchange's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSample {
    /// Wall time minus uptime, in milliseconds.
    pub offset_ms: i64,
    /// The round trip, in milliseconds.
    pub rtt_ms: u64,
}

impl TimeSample {
    /// The sample of a request sent at wall `t0_ms`, answered with uptime `uptime_ms`, received
    /// at wall `t1_ms`; `None` when `t1 < t0` (the wall clock stepped back) or out of range.
    pub fn new(t0_ms: u64, t1_ms: u64, uptime_ms: u64) -> Option<TimeSample> {
        let rtt_ms = t1_ms.checked_sub(t0_ms)?;
        let midpoint = i64::try_from(t0_ms + rtt_ms / 2).ok()?;
        let offset_ms = midpoint.checked_sub(i64::try_from(uptime_ms).ok()?)?;
        Some(TimeSample { offset_ms, rtt_ms })
    }
}

/// The gateway's estimate of one device's clock offset: the minimum-round-trip sample of the
/// last `N` exchanges.
#[derive(Debug, Clone)]
pub struct ClockSync<const N: usize> {
    samples: [Option<TimeSample>; N],
    next: usize,
    /// The device's uptime seen last: an uptime below it means the device rebooted.
    last_uptime_ms: u64,
}

impl<const N: usize> Default for ClockSync<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ClockSync<N> {
    /// No samples yet.
    pub const fn new() -> Self {
        const { assert!(N >= 1, "keep at least one sample") };
        ClockSync { samples: [None; N], next: 0, last_uptime_ms: 0 }
    }

    /// Records an answer; returns the sample.
    pub fn on_response(&mut self, t0_ms: u64, t1_ms: u64, uptime_ms: u64) -> Option<TimeSample> {
        self.observe_uptime(uptime_ms);
        let sample = TimeSample::new(t0_ms, t1_ms, uptime_ms)?;
        self.samples[self.next] = Some(sample);
        self.next = (self.next + 1) % N;
        Some(sample)
    }

    /// The device reported `uptime_ms` (hello, time response): if it went back, the device
    /// rebooted and every sample is forgotten.
    pub fn observe_uptime(&mut self, uptime_ms: u64) {
        if uptime_ms < self.last_uptime_ms {
            *self = Self::new();
        }
        self.last_uptime_ms = uptime_ms;
    }

    /// The best sample (smallest round trip, the most recent among equals), if any.
    pub fn best(&self) -> Option<TimeSample> {
        let mut best: Option<TimeSample> = None;
        for i in 0..N {
            // From the oldest to the newest, so a later equal round trip wins.
            if let Some(sample) = self.samples[(self.next + i) % N] {
                if best.is_none_or(|b| sample.rtt_ms <= b.rtt_ms) {
                    best = Some(sample);
                }
            }
        }
        best
    }

    /// Wall time (ms since the Unix epoch) of the device's uptime `uptime_ms`, once synced.
    pub fn to_wall_ms(&self, uptime_ms: u64) -> Option<i64> {
        let offset = self.best()?.offset_ms;
        i64::try_from(uptime_ms).ok()?.checked_add(offset)
    }
}
