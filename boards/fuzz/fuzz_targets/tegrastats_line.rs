#![no_main]
//! Arbitrary bytes into the tegrastats parser: it never panics, keeps within its capacities, and every
//! borrowed name is a piece of the input.

use chouette_boards::tegrastats::{parse_line, Cpu, MAX_CPUS, MAX_ENGINES, MAX_RAILS, MAX_TEMPS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = core::str::from_utf8(data) else { return };
    let Ok(t) = parse_line(line) else { return };
    assert!(t.cpus.len() <= MAX_CPUS);
    assert!(t.engines.len() <= MAX_ENGINES);
    assert!(t.temps.len() <= MAX_TEMPS);
    assert!(t.rails.len() <= MAX_RAILS);
    assert!(t.inactive_cpus() <= t.cpus.len());
    for c in &t.cpus {
        if let Cpu::Online { freq_mhz: Some(f), .. } = c {
            assert!(line.contains(&f.to_string()));
        }
    }
    for name in t.temps.iter().map(|z| z.zone).chain(t.rails.iter().map(|r| r.name)) {
        assert!(!name.is_empty() && line.contains(name));
    }
    let mut n = 0usize;
    t.datadog_metrics(|m| {
        assert!(m.value.is_finite());
        n += 1;
    });
    t.chouette_ram_metrics(|_| n += 1);
    t.chouette_temperature_metrics(|_| n += 1);
});
