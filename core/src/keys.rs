//! The Redis key names, in one place (compat §2.1).
//!
//! Every queue is a pair of keys in the original's layout: a sorted set of record ids scored by
//! timestamp (`<prefix>.keys`) and a hash from id to JSON (`<prefix>.values`). The embedded
//! store keeps the same queues in two tables of its own, `<prefix>.index` (ordered by score) and
//! `<prefix>.ids` (id to score). The apps (the Python `chouette-iot-client` and
//! `chouette-client`) write [`RAW_METRICS`] and [`LOGS`]; everything else is the agent's.
//!
//! ```
//! use chouette_core::keys;
//! assert_eq!(keys::RAW_METRICS.keys, "chouette:metrics:raw.keys");
//! assert_eq!(keys::LOGS.values, "chouette:logs:wrapped.values");
//! ```

/// The names of one queue's keys (Redis) and tables (embedded store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueKeys {
    /// The prefix, which also names the queue in dead-letter envelopes: `chouette:metrics:raw`.
    pub prefix: &'static str,
    /// The Redis sorted set of ids scored by timestamp: `<prefix>.keys`.
    pub keys: &'static str,
    /// The Redis hash from id to record: `<prefix>.values`.
    pub values: &'static str,
    /// The embedded store's table ordered by (score, id): `<prefix>.index`.
    pub index_table: &'static str,
    /// The embedded store's table from id to score: `<prefix>.ids`.
    pub ids_table: &'static str,
}

/// Builds a [`QueueKeys`] from one literal prefix, so each name is written once.
macro_rules! queue_keys {
    ($prefix:literal) => {
        QueueKeys {
            prefix: $prefix,
            keys: concat!($prefix, ".keys"),
            values: concat!($prefix, ".values"),
            index_table: concat!($prefix, ".index"),
            ids_table: concat!($prefix, ".ids"),
        }
    };
}

/// Raw metrics written by the apps (and the agent's self-metrics): `chouette:metrics:raw`.
pub const RAW_METRICS: QueueKeys = queue_keys!("chouette:metrics:raw");
/// Aggregated points waiting for dispatch: `chouette:metrics:wrapped`.
pub const WRAPPED_METRICS: QueueKeys = queue_keys!("chouette:metrics:wrapped");
/// Log records written by the apps, waiting for dispatch: `chouette:logs:wrapped`.
pub const LOGS: QueueKeys = queue_keys!("chouette:logs:wrapped");
/// Raw records refused by the parser or the aggregator: `chouette:metrics:raw.dead`.
pub const DEAD_RAW_METRICS: QueueKeys = queue_keys!("chouette:metrics:raw.dead");
/// Wrapped points refused by the backend or unparseable: `chouette:metrics:wrapped.dead`.
pub const DEAD_WRAPPED_METRICS: QueueKeys = queue_keys!("chouette:metrics:wrapped.dead");
/// Logs refused by the intake or unparseable: `chouette:logs:wrapped.dead`.
pub const DEAD_LOGS: QueueKeys = queue_keys!("chouette:logs:wrapped.dead");
/// The InfluxDB output's outbox: `chouette:metrics:wrapped.influxdb`.
pub const WRAPPED_INFLUXDB: QueueKeys = queue_keys!("chouette:metrics:wrapped.influxdb");
/// The InfluxDB output's dead letters: `chouette:metrics:wrapped.influxdb.dead`.
pub const DEAD_WRAPPED_INFLUXDB: QueueKeys = queue_keys!("chouette:metrics:wrapped.influxdb.dead");
/// The OpenTSDB output's outbox: `chouette:metrics:wrapped.opentsdb`.
pub const WRAPPED_OPENTSDB: QueueKeys = queue_keys!("chouette:metrics:wrapped.opentsdb");
/// The OpenTSDB output's dead letters: `chouette:metrics:wrapped.opentsdb.dead`.
pub const DEAD_WRAPPED_OPENTSDB: QueueKeys = queue_keys!("chouette:metrics:wrapped.opentsdb.dead");
/// DogStatsD events (`_e{..}`) waiting for Datadog's `/api/v1/events`: `chouette:events`.
pub const EVENTS: QueueKeys = queue_keys!("chouette:events");
/// Events Datadog refused or that are not an event's JSON: `chouette:events.dead`.
pub const DEAD_EVENTS: QueueKeys = queue_keys!("chouette:events.dead");
/// DogStatsD service checks (`_sc|..`) waiting for Datadog's `/api/v1/check_run`:
/// `chouette:service_checks`.
pub const SERVICE_CHECKS: QueueKeys = queue_keys!("chouette:service_checks");
/// Service checks Datadog refused or that are not a check's JSON: `chouette:service_checks.dead`.
pub const DEAD_SERVICE_CHECKS: QueueKeys = queue_keys!("chouette:service_checks.dead");

/// The agent's aggregation watermark, a decimal float (a Redis string; a row of the embedded
/// store's [`META_TABLE`]).
pub const AGGREGATED_UNTIL: &str = "chouette:agent:aggregated_until";
/// The agent's status, read by `chouette status` (a Redis hash; an embedded store table).
pub const STATUS: &str = "chouette:agent:status";
/// The embedded store's table of agent values (the watermark).
pub const META_TABLE: &str = "chouette:agent:meta";
/// The embedded store's table a reopen writes a probe into, to prove writes work again.
pub const PROBE_TABLE: &str = "chouette:agent:probe";
/// The serial link's per-device de-duplication state (boot id, last committed sequence: opaque
/// bytes to the store), written in the same atomic step as the points it acknowledges: a Redis
/// hash (field = device), an embedded store table (key = device).
pub const LINK_STATE: &str = "chouette:link:state";

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned against compat §2.1 and the original's `_get_queue_names`, written out in full
    /// (not built with the macro under test).
    #[test]
    fn names_are_the_originals() {
        assert_eq!(
            RAW_METRICS,
            QueueKeys {
                prefix: "chouette:metrics:raw",
                keys: "chouette:metrics:raw.keys",
                values: "chouette:metrics:raw.values",
                index_table: "chouette:metrics:raw.index",
                ids_table: "chouette:metrics:raw.ids",
            }
        );
        assert_eq!(
            (WRAPPED_METRICS.keys, WRAPPED_METRICS.values),
            ("chouette:metrics:wrapped.keys", "chouette:metrics:wrapped.values")
        );
        assert_eq!((LOGS.keys, LOGS.values), ("chouette:logs:wrapped.keys", "chouette:logs:wrapped.values"));
        assert_eq!(DEAD_RAW_METRICS.keys, "chouette:metrics:raw.dead.keys");
        assert_eq!(DEAD_WRAPPED_METRICS.values, "chouette:metrics:wrapped.dead.values");
        assert_eq!(DEAD_LOGS.ids_table, "chouette:logs:wrapped.dead.ids");
        assert_eq!(DEAD_WRAPPED_INFLUXDB.keys, "chouette:metrics:wrapped.influxdb.dead.keys");
        assert_eq!(WRAPPED_OPENTSDB.values, "chouette:metrics:wrapped.opentsdb.values");
        assert_eq!(EVENTS.keys, "chouette:events.keys");
        assert_eq!(DEAD_EVENTS.values, "chouette:events.dead.values");
        assert_eq!(SERVICE_CHECKS.values, "chouette:service_checks.values");
        assert_eq!(DEAD_SERVICE_CHECKS.keys, "chouette:service_checks.dead.keys");
        assert_eq!(AGGREGATED_UNTIL, "chouette:agent:aggregated_until");
        assert_eq!(STATUS, "chouette:agent:status");
        assert_eq!(LINK_STATE, "chouette:link:state");
    }
}
