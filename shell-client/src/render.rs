//! Rendering records as the original Python client writes them (compat §2.2, §2.4), and ids.

use chouette_core::wire::raw::write_raw_metric;
use chouette_core::wire::write::Writer;
use chouette_core::MetricType;

use crate::sanitize::SanitizeMode;

pub(crate) use chouette_core::wire::raw::write_member;
pub use chouette_core::wire::raw::{Number, RawValue};

/// Renders one raw record with the core's encoder (the Python client's JSON, compat §2.2), the
/// name and tag keys sanitized. Global tags come first; a call tag with the same key replaces
/// the global one (as the Python dict `{**global_tags, **tags}` would).
#[allow(clippy::too_many_arguments)]
pub(crate) fn raw_metric(
    w: &mut Writer<'_>,
    sanitize: SanitizeMode,
    name: &str,
    kind: MetricType,
    value: RawValue<'_>,
    timestamp: f64,
    global: &[(String, String)],
    tags: &[(&str, &str)],
) {
    let global = global
        .iter()
        .filter(|(k, _)| !tags.iter().any(|(ck, _)| ck == k))
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let all = global.chain(tags.iter().copied()).map(|(k, v)| (sanitize.tag_key(k), v));
    write_raw_metric(w, &sanitize.name(name), kind, value, timestamp, all);
}

/// The per-thread scratch grows up to this (the largest log Datadog's intake takes is 1 MiB;
/// most are far smaller), so records up to it render once, without allocating, after the first.
const SCRATCH_MAX_BYTES: usize = 64 * 1024;

thread_local! {
    /// Per-thread scratch for rendering, so a call neither allocates nor zeroes a buffer.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 1024]);
}

/// Renders into this thread's scratch buffer (grown up to `SCRATCH_MAX_BYTES`, and a heap one if
/// that is busy or still too small: `f` is then called a second time), and gives the rendered
/// bytes to `done`. `None` when `f` wrote
/// something that is not JSON (a non-finite number).
pub(crate) fn render<R>(f: impl Fn(&mut Writer<'_>), done: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let mut done = Some(done);
    let mut required = 1024;
    let from_scratch = SCRATCH
        .try_with(|scratch| {
            let mut scratch = scratch.try_borrow_mut().ok()?;
            loop {
                let mut w = Writer::new(&mut scratch);
                f(&mut w);
                match w.finish() {
                    Ok(len) => return done.take().map(|done| done(&scratch[..len])),
                    Err(chouette_core::wire::EncodeError::BufferTooSmall { required: r })
                        if r > scratch.len() && r <= SCRATCH_MAX_BYTES =>
                    {
                        scratch.resize(r, 0);
                    }
                    Err(chouette_core::wire::EncodeError::BufferTooSmall { required: r }) => {
                        required = r;
                        return None;
                    }
                    Err(_) => {
                        required = 0;
                        return None;
                    }
                }
            }
        })
        .ok()
        .flatten();
    if from_scratch.is_some() || required == 0 {
        return from_scratch;
    }
    let done = done?;
    let mut heap = vec![0u8; required];
    let mut w = Writer::new(&mut heap);
    f(&mut w);
    let len = w.finish().ok()?;
    Some(done(&heap[..len]))
}

/// A seed for the record ids (`chouette_core::id::IdGenerator`), from the OS (through std's
/// randomly keyed hasher), the clock and the process id: unique per writer, not secret.
pub(crate) fn id_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Now, as float Unix seconds (Python's `time.time()`).
/// Whole microseconds (Python's `time.time()` carries sub-microsecond noise; the extra digits say
/// nothing and cost a slow float formatting on the app's thread).
#[inline]
pub(crate) fn now_secs() -> f64 {
    let (secs, nanos) = wall_clock();
    // u64 micros (not a u128, whose conversion to f64 is a slow library call).
    (secs.saturating_mul(1_000_000) + u64::from(micros_of(nanos))) as f64 / 1e6
}

/// `nanos / 1000` for `nanos < 10^9`, as a multiply and a shift: the shipped profile optimises
/// for size (`opt-level = "z"`), where the division stays a 64-bit `idiv` that was three
/// quarters of the clock's cost on the app's thread. The constant is the one compilers use for
/// an unsigned 32-bit division by 1000 (`ceil(2^38 / 1000)`), exact for every `u32`.
#[inline(always)]
fn micros_of(nanos: u32) -> u32 {
    ((u64::from(nanos) * 0x1062_4DD3) >> 38) as u32
}

/// The wall clock (`CLOCK_REALTIME`) as whole Unix seconds and nanoseconds; zero before 1970.
///
/// On Linux through rustix's vDSO call, which gives the seconds and nanoseconds directly: std's
/// `SystemTime::now().duration_since(UNIX_EPOCH)` spent as long again as the clock itself in
/// non-inlined conversions, on the app's thread, at every call.
#[inline(always)]
pub(crate) fn wall_clock() -> (u64, u32) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        match (u64::try_from(now.tv_sec), u32::try_from(now.tv_nsec)) {
            (Ok(secs), Ok(nanos)) => (secs, nanos),
            _ => (0, 0),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()))
    }
}

#[cfg(test)]
mod tests {
    use chouette_core::Member;

    use super::*;

    fn text(f: impl Fn(&mut Writer<'_>)) -> String {
        render(f, |b| String::from_utf8(b.to_vec()).unwrap()).unwrap()
    }

    #[test]
    fn micros_are_whole_microseconds_of_every_nanosecond_count() {
        // Every boundary below a second, and a stride over the rest (the u32 range beyond 10^9
        // too: the constant is exact for all of it).
        for k in 0..1_000_000u32 {
            for nanos in [k * 1000, k * 1000 + 999] {
                assert_eq!(super::micros_of(nanos), nanos / 1000, "{nanos}");
            }
        }
        for nanos in (0..=u32::MAX).step_by(9_973).chain([u32::MAX]) {
            assert_eq!(super::micros_of(nanos), nanos / 1000, "{nanos}");
        }
        let (secs, nanos) = super::wall_clock();
        assert!(secs > 1_700_000_000 && nanos < 1_000_000_000, "{secs} {nanos}");
    }

    #[test]
    fn raw_records_are_python_json() {
        let got = text(|w| {
            raw_metric(
                w,
                SanitizeMode::None,
                "my.count",
                MetricType::Count,
                RawValue::Number(Number::Int(2)),
                1600000000.25,
                &[],
                &[("k", "v")],
            )
        });
        assert_eq!(
            got,
            r#"{"metric": "my.count", "type": "count", "value": 2, "timestamp": 1600000000.25, "tags": {"k": "v"}}"#
        );
        let global = vec![("env".to_owned(), "prod".to_owned()), ("k".to_owned(), "g".to_owned())];
        let got = text(|w| {
            raw_metric(
                w,
                SanitizeMode::None,
                "g",
                MetricType::Gauge,
                RawValue::Number(Number::Float(1.0)),
                10.0,
                &global,
                &[("k", "é\"")],
            )
        });
        assert_eq!(
            got,
            r#"{"metric": "g", "type": "gauge", "value": 1.0, "timestamp": 10.0, "tags": {"env": "prod", "k": "\u00e9\""}}"#
        );
        let members = [Member::Str("a"), Member::Num(2.0), Member::Num(0.5)];
        let got = text(|w| {
            raw_metric(
                w,
                SanitizeMode::None,
                "s",
                MetricType::Set,
                RawValue::Members(&members),
                10.5,
                &[],
                &[],
            )
        });
        assert_eq!(
            got,
            r#"{"metric": "s", "type": "set", "value": ["a", 2, 0.5], "timestamp": 10.5, "tags": {}}"#
        );
    }

    #[test]
    fn long_records_grow_the_scratch_then_fall_back_to_the_heap() {
        for n in [2000, SCRATCH_MAX_BYTES, 2 * SCRATCH_MAX_BYTES, 100] {
            let name = "n".repeat(n);
            let got = render(
                |w| {
                    let value = RawValue::Number(Number::Int(1));
                    raw_metric(w, SanitizeMode::None, &name, MetricType::Count, value, 1.0, &[], &[])
                },
                <[u8]>::to_vec,
            )
            .unwrap();
            let want = format!(
                r#"{{"metric": "{name}", "type": "count", "value": 1, "timestamp": 1.0, "tags": {{}}}}"#
            );
            assert_eq!(std::str::from_utf8(&got).unwrap(), want);
        }
        let grown = SCRATCH.with(|s| s.borrow().len());
        assert!(grown > 2000 && grown <= SCRATCH_MAX_BYTES, "{grown}");
    }
}
