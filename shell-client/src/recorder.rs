//! A `metrics` crate recorder: `counter!` → `count`, `gauge!` → `gauge`, `histogram!` →
//! `histogram`; labels become tags.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit,
};

use crate::Client;

/// Reports the `metrics` facade through a [`Client`].
///
/// Counter increments are written as `count` records of the increment (a delta);
/// `absolute(v)` writes the difference from the last absolute value. Gauges keep their level
/// (so `increment`/`decrement` work) and write it as a `gauge`. Histograms write each sample.
/// Handles are shared per key: registering the same key twice gives the same state.
#[derive(Debug)]
pub struct ChouetteRecorder {
    client: Client,
    counters: Mutex<HashMap<Key, Arc<Handle>>>,
    gauges: Mutex<HashMap<Key, Arc<Handle>>>,
}

/// One registered series: its name, tags and state (last absolute counter value, or the gauge
/// level as `f64` bits).
#[derive(Debug)]
struct Handle {
    client: Client,
    name: String,
    tags: Vec<(String, String)>,
    state: AtomicU64,
}

impl Handle {
    fn new(client: &Client, key: &Key) -> Self {
        Handle {
            client: client.clone(),
            name: key.name().to_owned(),
            tags: key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect(),
            state: AtomicU64::new(0),
        }
    }

    fn with_tags<R>(&self, f: impl FnOnce(&[(&str, &str)]) -> R) -> R {
        let mut stack: [(&str, &str); 8] = [("", ""); 8];
        if self.tags.len() <= stack.len() {
            for (slot, (k, v)) in stack.iter_mut().zip(&self.tags) {
                *slot = (k, v);
            }
            f(&stack[..self.tags.len()])
        } else {
            let tags: Vec<(&str, &str)> = self.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            f(&tags)
        }
    }

    fn gauge_update(&self, update: impl Fn(f64) -> f64) {
        let mut new = 0.0;
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
            new = update(f64::from_bits(bits));
            Some(new.to_bits())
        });
        self.with_tags(|tags| self.client.gauge(&self.name, new, tags));
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.with_tags(|tags| self.client.count(&self.name, value, tags));
    }

    fn absolute(&self, value: u64) {
        let last = self.state.swap(value, Ordering::AcqRel);
        if value > last {
            self.with_tags(|tags| self.client.count(&self.name, value - last, tags));
        }
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.gauge_update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.gauge_update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.gauge_update(|_| value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.with_tags(|tags| self.client.histogram(&self.name, value, tags));
    }
}

impl ChouetteRecorder {
    /// A recorder writing through `client`.
    pub fn new(client: Client) -> Self {
        ChouetteRecorder { client, counters: Mutex::default(), gauges: Mutex::default() }
    }

    /// Installs this recorder as the `metrics` facade's global recorder.
    pub fn install(self) -> Result<(), metrics::SetRecorderError<Self>> {
        metrics::set_global_recorder(self)
    }

    fn shared(&self, map: &Mutex<HashMap<Key, Arc<Handle>>>, key: &Key) -> Arc<Handle> {
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(key.clone()).or_insert_with(|| Arc::new(Handle::new(&self.client, key))))
    }
}

impl metrics::Recorder for ChouetteRecorder {
    fn describe_counter(&self, _key: KeyName, _unit: Option<Unit>, _description: SharedString) {}
    fn describe_gauge(&self, _key: KeyName, _unit: Option<Unit>, _description: SharedString) {}
    fn describe_histogram(&self, _key: KeyName, _unit: Option<Unit>, _description: SharedString) {}

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.shared(&self.counters, key))
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.shared(&self.gauges, key))
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Handle::new(&self.client, key)))
    }
}
