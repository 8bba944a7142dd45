//! The Chouette agent: reads raw metrics from Redis (the original Chouette-IoT layout) or from an
//! embedded store, aggregates them with `chouette-core`, keeps the wrapped points durably queued
//! and ships them, with the logs, to Datadog or any Datadog-compatible backend.
//!
//! Layers:
//! - [`limits`]: every fixed capacity of the agent (pages, batches, buffers, payload limits), with
//!   what each bounds, what it costs and why that number.
//! - [`config`]: the environment (the original's variables, same defaults) into a [`config::Config`].
//! - [`store`]: the [`store::Store`] trait, over Redis ([`store::redis`]) or redb ([`store::embedded`]).
//! - [`dispatch`]: HTTP to Datadog: compression, status handling, splitting, bisecting, backoff.
//! - [`pipeline`]: the aggregate, release and cleanup ticks, self-metrics, status.
//! - [`dogstatsd`]: the DogStatsD listener (UDP and Unix datagram sockets), a source.
//! - [`collect`]: the collector plugins (host, tegrastats, docker, k8s, dramatiq, rpi) and their runner.
//! - [`logging`]: the agent's own log lines on stdout.

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
