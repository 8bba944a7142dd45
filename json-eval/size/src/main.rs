//! A bare-metal program that parses one raw, one wrapped and (with `log`) one log record with the
//! parsers its features select, so that `llvm-size` of the linked binary, less the baseline's
//! (no feature), is what those parsers cost in flash. Inputs go through `black_box`, and so do
//! the results, so nothing is folded away. Built and measured by `json-eval/size.sh`.

#![no_std]
#![no_main]

use core::hint::black_box;
use core::panic::PanicInfo;

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

static RAW: &[u8] = br#"{"metric": "app.users", "type": "set", "value": ["alice", "bob"], "timestamp": 1795310772.75, "tags": {"app": "web"}}"#;
static WRAPPED: &[u8] =
    br#"{"metric": "req", "tags": ["ep:a"], "points": [[1795310771.0, 1]], "type": "count", "interval": 10}"#;
static LOG: &[u8] = br#"{"date": "2026-11-22T01:25:26.038424+00:00", "ddsource": "svc", "ddtags": ["a:b"], "level": "INFO", "message": {"msg": "hello %s"}, "service": "svc"}"#;

/// The entry point the linker keeps; everything it reaches is what the binary holds.
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let mut scratch = [0u8; 512];
    let raw = black_box(RAW);
    let wrapped = black_box(WRAPPED);
    let log = black_box(LOG);
    #[cfg(feature = "scanner")]
    {
        black_box(&chouette_core::wire::raw::parse_raw_metric(raw, &mut scratch));
        black_box(&chouette_core::wire::wrapped::parse_wrapped(wrapped, &mut scratch));
        #[cfg(feature = "log")]
        black_box(&chouette_core::wire::log::parse_log(log));
    }
    #[cfg(feature = "serde")]
    {
        black_box(&chouette_json_eval::parse_raw(raw, &mut scratch));
        black_box(&chouette_json_eval::parse_wrapped(wrapped, &mut scratch));
        #[cfg(feature = "log")]
        black_box(&chouette_json_eval::parse_log(log));
    }
    black_box((raw, wrapped, log, &mut scratch));
    loop {
        core::hint::spin_loop();
    }
}
