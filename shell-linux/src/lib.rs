//! The Chouette agent: reads raw metrics from Redis (the original Chouette-IoT layout) or from an
//! embedded store, aggregates them with `chouette-core`, keeps the wrapped points durably queued
//! and ships them, with the logs, to Datadog or any Datadog-compatible backend.
//!
//! ## Map of the layers, bottom up
//!
//! - [`limits`]: every fixed capacity of the agent (pages, batches, buffers, payload limits), with
//!   what each bounds, what it costs and why that number.
//! - [`config`]: the environment (the original's variables, same defaults; one table,
//!   `config/vars.rs`) into a [`config::Config`]; [`logging`]: the agent's own log lines.
//! - [`store`]: the [`store::Store`] trait, one contract, over Redis ([`store::redis`], with its
//!   page reader, `store/resp.rs`) or redb ([`store::embedded`]).
//! - [`pipeline`]: the steps: aggregation (raw records of a closed bucket into every outbox, one
//!   transaction), release passes, TTL cleanup, self-metrics and status.
//! - Outputs, [`dispatch`]: the `Output` seam (Datadog series and logs, events and service
//!   checks, InfluxDB, OpenTSDB) and what is written once for all of them: planning payloads,
//!   compression, posting, splitting, bisecting, backoff. A new backend is a file there.
//! - Sources, [`source`]: the `Source` seam and its `Sink`; [`collect`]: the collector plugins
//!   (host, rpi, tegrastats, docker, k8s, dramatiq; a new collector is a file there);
//!   [`serial`]: the serial link's gateway end; [`dogstatsd`]: the DogStatsD listener.
//! - [`agent`]: the run loop (`agent::run`, one screen), which knows sources and outputs only
//!   through their seams; [`notify`]: systemd readiness and watchdog.
//! - [`cli`]: the command line (`chouette [run]`, `status`, `dead`, `--help`); `main.rs` parses it
//!   and calls [`agent::run`] or a subcommand.

pub mod agent;
pub mod cli;
pub mod collect;
pub mod config;
pub mod dispatch;
pub mod dogstatsd;
pub mod limits;
pub mod logging;
pub mod notify;
pub mod pipeline;
pub mod serial;
pub mod source;
pub mod store;
