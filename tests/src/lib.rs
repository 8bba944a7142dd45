#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod firmware;
pub mod intake;
pub mod proxy;
pub mod pty;
pub mod servers;
pub mod util;

pub use agent::Agent;
pub use firmware::{firmware_elf, Firmware, FirmwareExit, FirmwareOptions};
pub use intake::{Answer, FakeIntake, Request, When};
pub use proxy::{Direction, FaultProxy, Faults, LineFaults};
pub use pty::PtyPair;
pub use servers::{influxd_path, InfluxServer, RedisServer, RedisTls, VictoriaMetrics};
pub use util::{
    free_port, free_udp_port, http_get, http_request, udp_drops, udp_rx_queue, wait_udp_bound, wait_until,
    write_raw, TempDir,
};
