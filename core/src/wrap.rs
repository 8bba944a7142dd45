//! Wrapper math: how one flushed series-bucket becomes Datadog points.
//!
//! Two wrappers, as in the original (`METRICS_WRAPPER`): [`WrapperKind::Datadog`] (the default,
//! DogStatsD semantics) and [`WrapperKind::Simple`]. Histogram aggregates and percentiles follow
//! `HISTOGRAM_AGGREGATES` / `HISTOGRAM_PERCENTILES`.
//!
//! Deliberate differences from the original (compat §5.4, §7):
//! - every point carries the bucket's start as its timestamp (the original used the min or max
//!   sample timestamp), so a re-sent point is idempotent at the backend;
//! - the configured interval is used for `rate`, `count` and `.count` (the original reset it to
//!   10 whenever a bucket held two records);
//! - aggregates are chosen by name only (the original kept all six when the metric's own name
//!   contained "percentile");
//! - percentile names are exact (`0.29` → `29percentile`); a percentile that is not a whole
//!   percent, above 1, or named twice is a configuration error (the original truncated `0.999` to
//!   `99percentile` and crashed on `p > 1` once a bucket held two values);
//! - `distribution` samples are summarised like histograms (the original dropped them silently);
//! - the simple wrapper handles sets (cardinality as the gauge) instead of crashing.

use core::fmt;

use heapless::String;

use crate::metric::OutputType;

/// Which wrapper turns aggregates into points (`METRICS_WRAPPER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WrapperKind {
    /// DogStatsD semantics: count → count, rate → rate, gauge → last, set → count of distinct
    /// members, histogram → the configured aggregates and percentiles.
    #[default]
    Datadog,
    /// The original's `simple` wrapper: count → sum; everything else → `name` gauge (average)
    /// and `name.count` count.
    Simple,
}

impl WrapperKind {
    /// Parses `datadog` or `simple`, in any case (the original lower-cased the name).
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("datadog") {
            Some(WrapperKind::Datadog)
        } else if text.eq_ignore_ascii_case("simple") {
            Some(WrapperKind::Simple)
        } else {
            None
        }
    }
}

/// One histogram aggregate (`HISTOGRAM_AGGREGATES`), in the original's output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramAggregate {
    /// `name.avg`: gauge, the mean.
    Avg,
    /// `name.count`: rate, samples per second over the interval.
    Count,
    /// `name.sum`: gauge, the sum.
    Sum,
    /// `name.min`: gauge.
    Min,
    /// `name.max`: gauge.
    Max,
    /// `name.median`: gauge, the 0.5 percentile.
    Median,
}

impl HistogramAggregate {
    /// Every aggregate, in output order.
    pub const ALL: [HistogramAggregate; 6] = [
        HistogramAggregate::Avg,
        HistogramAggregate::Count,
        HistogramAggregate::Sum,
        HistogramAggregate::Min,
        HistogramAggregate::Max,
        HistogramAggregate::Median,
    ];

    /// The name used in configuration and as the metric suffix.
    pub const fn as_str(self) -> &'static str {
        match self {
            HistogramAggregate::Avg => "avg",
            HistogramAggregate::Count => "count",
            HistogramAggregate::Sum => "sum",
            HistogramAggregate::Min => "min",
            HistogramAggregate::Max => "max",
            HistogramAggregate::Median => "median",
        }
    }

    /// Parses a configured name (case-sensitive, as the original).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Most percentiles one configuration can name.
pub const MAX_PERCENTILES: usize = 8;

/// A configured percentile: its fraction and its metric suffix (`95percentile`).
#[derive(Debug, Clone, PartialEq)]
pub struct Percentile {
    /// The fraction, in `[0, 1]`.
    pub fraction: f64,
    suffix: String<16>,
}

impl Percentile {
    /// The metric suffix, e.g. `95percentile`.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }
}

/// A histogram configuration that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum WrapConfigError {
    /// An aggregate name other than avg, count, sum, min, max, median.
    UnknownAggregate,
    /// A percentile outside `[0, 1]` or not a number.
    PercentileOutOfRange(f64),
    /// A percentile that is not a whole percent (its name would not be exact).
    PercentileNotWhole(f64),
    /// Two percentiles with the same name.
    DuplicatePercentile(f64),
    /// More than [`MAX_PERCENTILES`] percentiles.
    TooManyPercentiles,
}

impl fmt::Display for WrapConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WrapConfigError::UnknownAggregate => {
                f.write_str("unknown histogram aggregate (expected avg, count, sum, min, max or median)")
            }
            WrapConfigError::PercentileOutOfRange(p) => {
                write!(f, "percentile {p} is outside 0..1")
            }
            WrapConfigError::PercentileNotWhole(p) => write!(
                f,
                "percentile {p} is not a whole percent (names are <percent>percentile, e.g. 0.95 → 95percentile)"
            ),
            WrapConfigError::DuplicatePercentile(p) => write!(f, "percentile {p} is named twice"),
            WrapConfigError::TooManyPercentiles => {
                write!(f, "more than {MAX_PERCENTILES} percentiles")
            }
        }
    }
}

impl core::error::Error for WrapConfigError {}

/// Wrapper choice plus histogram aggregates and percentiles.
#[derive(Debug, Clone, PartialEq)]
pub struct WrapConfig {
    /// Which wrapper.
    pub kind: WrapperKind,
    aggregates: u8,
    percentiles: heapless::Vec<Percentile, MAX_PERCENTILES>,
}

impl Default for WrapConfig {
    /// The original's defaults: Datadog wrapper, `["max","median","avg","count"]`, `[0.95]`.
    fn default() -> Self {
        let mut config = WrapConfig::empty(WrapperKind::Datadog);
        for aggregate in [
            HistogramAggregate::Max,
            HistogramAggregate::Median,
            HistogramAggregate::Avg,
            HistogramAggregate::Count,
        ] {
            config.add_aggregate(aggregate);
        }
        // 0.95 is in range, whole and the only one: this cannot fail.
        let _ = config.add_percentile(0.95);
        config
    }
}

impl WrapConfig {
    /// A configuration with no histogram aggregates and no percentiles.
    pub fn empty(kind: WrapperKind) -> Self {
        WrapConfig { kind, aggregates: 0, percentiles: heapless::Vec::new() }
    }

    /// Removes every aggregate and percentile (before applying a configured list).
    pub fn clear_histogram_outputs(&mut self) {
        self.aggregates = 0;
        self.percentiles.clear();
    }

    /// Adds one aggregate (idempotent).
    pub fn add_aggregate(&mut self, aggregate: HistogramAggregate) {
        self.aggregates |= aggregate.bit();
    }

    /// Adds one aggregate by its configured name.
    pub fn add_aggregate_named(&mut self, name: &str) -> Result<(), WrapConfigError> {
        let aggregate = HistogramAggregate::parse(name).ok_or(WrapConfigError::UnknownAggregate)?;
        self.add_aggregate(aggregate);
        Ok(())
    }

    /// Whether `aggregate` is emitted.
    pub fn has_aggregate(&self, aggregate: HistogramAggregate) -> bool {
        self.aggregates & aggregate.bit() != 0
    }

    /// Adds one percentile, a fraction in `[0, 1]` that is a whole percent.
    pub fn add_percentile(&mut self, fraction: f64) -> Result<(), WrapConfigError> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(WrapConfigError::PercentileOutOfRange(fraction));
        }
        let percent = fraction * 100.0;
        let whole = (percent + 0.5) as u32;
        if (percent - whole as f64).abs() > 1e-9 {
            return Err(WrapConfigError::PercentileNotWhole(fraction));
        }
        let mut suffix: String<16> = String::new();
        // "100percentile" is 13 bytes: always fits.
        let _ = fmt::write(&mut suffix, format_args!("{whole}percentile"));
        if self.percentiles.iter().any(|p| p.suffix == suffix) {
            return Err(WrapConfigError::DuplicatePercentile(fraction));
        }
        self.percentiles
            .push(Percentile { fraction, suffix })
            .map_err(|_| WrapConfigError::TooManyPercentiles)
    }

    /// The configured percentiles, in order.
    pub fn percentiles(&self) -> &[Percentile] {
        &self.percentiles
    }
}

/// The summary of one series in one bucket, as the wrappers read it.
pub trait Summary {
    /// Number of samples.
    fn count(&self) -> u64;
    /// Sum of the samples.
    fn sum(&self) -> f64;
    /// Smallest sample.
    fn min(&self) -> f64;
    /// Largest sample.
    fn max(&self) -> f64;
    /// The `p` quantile (numpy linear interpolation while exact, the sketch's estimate after).
    fn quantile(&self, p: f64) -> f64;
}

impl Summary for crate::sketch::Histogram {
    fn count(&self) -> u64 {
        crate::sketch::Histogram::count(self)
    }

    fn sum(&self) -> f64 {
        crate::sketch::Histogram::sum(self)
    }

    fn min(&self) -> f64 {
        crate::sketch::Histogram::min(self).unwrap_or(f64::NAN)
    }

    fn max(&self) -> f64 {
        crate::sketch::Histogram::max(self).unwrap_or(f64::NAN)
    }

    fn quantile(&self, p: f64) -> f64 {
        crate::sketch::Histogram::quantile(self, p).unwrap_or(f64::NAN)
    }
}

/// One output of a wrapper, before the name, tags and timestamp are attached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output<'c> {
    /// Suffix joined to the metric name with a dot, if any.
    pub suffix: Option<&'c str>,
    /// The point's type.
    pub kind: OutputType,
    /// The value.
    pub value: f64,
    /// The interval, for `count` and `rate` points.
    pub interval: Option<u32>,
}

impl<'c> Output<'c> {
    const fn new(suffix: Option<&'c str>, kind: OutputType, value: f64, interval: Option<u32>) -> Self {
        Output { suffix, kind, value, interval }
    }
}

/// Most outputs one series-bucket produces: six aggregates plus the percentiles.
pub const MAX_OUTPUTS: usize = 6 + MAX_PERCENTILES;

/// The outputs of one series-bucket.
pub type Outputs<'c> = heapless::Vec<Output<'c>, MAX_OUTPUTS>;

/// Wraps a counter-like aggregate (`count` or `rate` samples): `sum` over `n` samples.
pub fn wrap_sum<'c>(config: &'c WrapConfig, is_rate: bool, sum: f64, n: u64, interval: u32) -> Outputs<'c> {
    let mut out = Outputs::new();
    let secs = interval as f64;
    let _ = match (config.kind, is_rate) {
        (WrapperKind::Datadog, false) | (WrapperKind::Simple, false) => {
            out.push(Output::new(None, OutputType::Count, sum, Some(interval)))
        }
        (WrapperKind::Datadog, true) => {
            out.push(Output::new(None, OutputType::Rate, sum / secs, Some(interval)))
        }
        (WrapperKind::Simple, true) => {
            let _ = out.push(Output::new(None, OutputType::Gauge, sum / n as f64, None));
            out.push(Output::new(Some("count"), OutputType::Count, n as f64, Some(interval)))
        }
    };
    out
}

/// Wraps a gauge: `last` is the latest value, `sum / n` the mean (for the simple wrapper).
pub fn wrap_gauge<'c>(config: &'c WrapConfig, last: f64, sum: f64, n: u64, interval: u32) -> Outputs<'c> {
    let mut out = Outputs::new();
    match config.kind {
        WrapperKind::Datadog => {
            let _ = out.push(Output::new(None, OutputType::Gauge, last, None));
        }
        WrapperKind::Simple => {
            let _ = out.push(Output::new(None, OutputType::Gauge, sum / n as f64, None));
            let _ = out.push(Output::new(Some("count"), OutputType::Count, n as f64, Some(interval)));
        }
    }
    out
}

/// Wraps a set: `distinct` members over `n` samples.
pub fn wrap_set<'c>(config: &'c WrapConfig, distinct: u64, n: u64, interval: u32) -> Outputs<'c> {
    let mut out = Outputs::new();
    match config.kind {
        WrapperKind::Datadog => {
            let _ = out.push(Output::new(None, OutputType::Count, distinct as f64, Some(interval)));
        }
        WrapperKind::Simple => {
            let _ = out.push(Output::new(None, OutputType::Gauge, distinct as f64, None));
            let _ = out.push(Output::new(Some("count"), OutputType::Count, n as f64, Some(interval)));
        }
    }
    out
}

/// Wraps a histogram or distribution summary.
pub fn wrap_histogram<'c>(config: &'c WrapConfig, summary: &dyn Summary, interval: u32) -> Outputs<'c> {
    let mut out = Outputs::new();
    let n = summary.count();
    if n == 0 {
        return out;
    }
    let avg = summary.sum() / n as f64;
    if config.kind == WrapperKind::Simple {
        let _ = out.push(Output::new(None, OutputType::Gauge, avg, None));
        let _ = out.push(Output::new(Some("count"), OutputType::Count, n as f64, Some(interval)));
        return out;
    }
    for aggregate in HistogramAggregate::ALL {
        if !config.has_aggregate(aggregate) {
            continue;
        }
        let (kind, value, interval) = match aggregate {
            HistogramAggregate::Avg => (OutputType::Gauge, avg, None),
            HistogramAggregate::Count => (OutputType::Rate, n as f64 / interval as f64, Some(interval)),
            HistogramAggregate::Sum => (OutputType::Gauge, summary.sum(), None),
            HistogramAggregate::Min => (OutputType::Gauge, summary.min(), None),
            HistogramAggregate::Max => (OutputType::Gauge, summary.max(), None),
            HistogramAggregate::Median => (OutputType::Gauge, summary.quantile(0.5), None),
        };
        let _ = out.push(Output::new(Some(aggregate.as_str()), kind, value, interval));
    }
    for percentile in config.percentiles() {
        let value = summary.quantile(percentile.fraction);
        let _ = out.push(Output::new(Some(percentile.suffix()), OutputType::Gauge, value, None));
    }
    out
}

/// numpy-style linear interpolation over sorted samples, with the original's exact arithmetic:
/// `idx = (n-1)·p`; an integral index returns that sample, otherwise
/// `s[floor]·(ceil-idx) + s[ceil]·(idx-floor)`.
pub fn interpolate_sorted(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let idx = (n - 1) as f64 * p;
    let floor = idx as usize; // idx >= 0, so the cast floors
    if idx == floor as f64 {
        return sorted[floor.min(n - 1)];
    }
    let ceil = (floor + 1).min(n - 1);
    sorted[floor] * (ceil as f64 - idx) + sorted[ceil] * (idx - floor as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Exact<'a>(&'a [f64]);

    impl Summary for Exact<'_> {
        fn count(&self) -> u64 {
            self.0.len() as u64
        }
        fn sum(&self) -> f64 {
            self.0.iter().sum()
        }
        fn min(&self) -> f64 {
            self.0.iter().copied().fold(f64::INFINITY, f64::min)
        }
        fn max(&self) -> f64 {
            self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        }
        fn quantile(&self, p: f64) -> f64 {
            interpolate_sorted(self.0, p)
        }
    }

    #[test]
    fn interpolation_matches_the_originals_reference_values() {
        let ten = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(interpolate_sorted(&ten, 0.5), 5.5);
        assert_eq!(interpolate_sorted(&ten, 0.75), 7.75);
        assert_eq!(interpolate_sorted(&ten, 0.9), 9.1);
        assert_eq!(interpolate_sorted(&ten, 0.95), 9.549999999999999);
        assert_eq!(interpolate_sorted(&ten, 0.99), 9.91);
        assert_eq!(interpolate_sorted(&[5.0], 0.95), 5.0);
        let eight = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0];
        assert_eq!(interpolate_sorted(&eight, 0.5), 2.0);
        assert_eq!(interpolate_sorted(&eight, 0.95), 3.0);
    }

    #[test]
    fn default_histogram_outputs_match_the_original_order_and_values() {
        // compat §8.3 / fixtures/chouette/histogram_example.expected.json
        let config = WrapConfig::default();
        let values = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0];
        let out = wrap_histogram(&config, &Exact(&values), 10);
        let got: heapless::Vec<(Option<&str>, OutputType, f64, Option<u32>), 8> =
            out.iter().map(|o| (o.suffix, o.kind, o.value, o.interval)).collect();
        assert_eq!(
            &got[..],
            &[
                (Some("avg"), OutputType::Gauge, 1.875, None),
                (Some("count"), OutputType::Rate, 0.8, Some(10)),
                (Some("max"), OutputType::Gauge, 3.0, None),
                (Some("median"), OutputType::Gauge, 2.0, None),
                (Some("95percentile"), OutputType::Gauge, 3.0, None),
            ]
        );
    }

    #[test]
    fn percentile_names_are_exact_and_checked() {
        let mut config = WrapConfig::empty(WrapperKind::Datadog);
        config.add_percentile(0.29).unwrap();
        config.add_percentile(0.57).unwrap();
        config.add_percentile(1.0).unwrap();
        {
            let names: heapless::Vec<&str, 4> = config.percentiles().iter().map(|p| p.suffix()).collect();
            assert_eq!(&names[..], &["29percentile", "57percentile", "100percentile"]);
        }
        assert_eq!(config.add_percentile(0.999), Err(WrapConfigError::PercentileNotWhole(0.999)));
        assert_eq!(config.add_percentile(1.5), Err(WrapConfigError::PercentileOutOfRange(1.5)));
        assert_eq!(config.add_percentile(0.29), Err(WrapConfigError::DuplicatePercentile(0.29)));
        assert!(config.add_percentile(f64::NAN).is_err());
    }

    #[test]
    fn aggregates_are_chosen_by_name_only() {
        let mut config = WrapConfig::empty(WrapperKind::Datadog);
        config.add_aggregate_named("min").unwrap();
        config.add_aggregate_named("sum").unwrap();
        assert_eq!(config.add_aggregate_named("Max"), Err(WrapConfigError::UnknownAggregate));
        let out = wrap_histogram(&config, &Exact(&[4.0, 1.0]), 10);
        let suffixes: heapless::Vec<Option<&str>, 4> = out.iter().map(|o| o.suffix).collect();
        assert_eq!(&suffixes[..], &[Some("sum"), Some("min")]);
    }

    #[test]
    fn rate_divides_by_the_configured_interval() {
        // compat §8.3: rate [1,2,3] over 10 s → 0.6; with a 15 s interval, 6/15.
        let config = WrapConfig::default();
        assert_eq!(wrap_sum(&config, true, 6.0, 3, 10)[0].value, 0.6);
        let out = wrap_sum(&config, true, 6.0, 3, 15);
        assert_eq!((out[0].value, out[0].interval), (6.0 / 15.0, Some(15)));
    }

    #[test]
    fn simple_wrapper_matches_the_original() {
        // compat §8.3 SimpleWrapper: gauge [1,2,3] interval 15 → gauge 2.0 + test.count 3 (15).
        let config = WrapConfig::empty(WrapperKind::Simple);
        let out = wrap_gauge(&config, 3.0, 6.0, 3, 15);
        assert_eq!(out[0], Output::new(None, OutputType::Gauge, 2.0, None));
        assert_eq!(out[1], Output::new(Some("count"), OutputType::Count, 3.0, Some(15)));
        let out = wrap_histogram(&config, &Exact(&[1.0, 2.0, 3.0]), 15);
        assert_eq!(&out[..], &wrap_gauge(&config, 3.0, 6.0, 3, 15)[..]);
        let out = wrap_sum(&config, false, 6.0, 3, 10);
        assert_eq!(&out[..], &[Output::new(None, OutputType::Count, 6.0, Some(10))]);
    }

    #[test]
    fn wrapper_names_parse_in_any_case() {
        assert_eq!(WrapperKind::parse("Datadog"), Some(WrapperKind::Datadog));
        assert_eq!(WrapperKind::parse("SIMPLE"), Some(WrapperKind::Simple));
        assert_eq!(WrapperKind::parse("none"), None);
    }
}
