//! Serial devices: microcontrollers that aggregate with the core and forward closed intervals
//! over a serial line (see `docs/link.md`).

pub mod session;
