//! Property tests: the tegrastats parser never panics, respects its capacities, and reads back what a
//! generated line holds whatever the spacing.

use chouette_boards::tegrastats::{parse_line, Cpu, MAX_CPUS, MAX_RAILS, MAX_TEMPS};
use proptest::prelude::*;

fn core() -> impl Strategy<Value = Option<(u16, u32)>> {
    prop_oneof![Just(None), (0u16..=100, 1u32..5000).prop_map(Some)]
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
        if let Ok(t) = parse_line(&s) {
            prop_assert!(t.cpus.len() <= MAX_CPUS);
            prop_assert!(t.temps.len() <= MAX_TEMPS);
            prop_assert!(t.rails.len() <= MAX_RAILS);
        }
    }

    #[test]
    fn never_panics_on_grammar_soup(parts in proptest::collection::vec(prop_oneof![
        Just("RAM"), Just("SWAP"), Just("IRAM"), Just("CPU"), Just("["), Just("]"), Just("@"), Just("%"),
        Just("/"), Just("mW"), Just("C"), Just("off"), Just("("), Just(")"), Just("lfb"), Just("x"), Just("MB"),
        Just("kB"), Just(" "), Just(","), Just("-"), Just("."), Just("12"), Just("4294967296"), Just("GPU"),
        Just("MTS fg"), Just("bg"),
    ], 0..60)) {
        let s: String = parts.concat();
        let _ = parse_line(&s);
    }

    #[test]
    fn round_trips_generated_lines(
        cores in proptest::collection::vec(core(), 1..=MAX_CPUS),
        used in 0u32..100_000, total in 0u32..100_000,
        temp in -40_000i32..120_000,
        cur in 0u32..100_000, avg in 0u32..100_000,
        gap in 1usize..4, mw in any::<bool>(),
    ) {
        let sp = " ".repeat(gap);
        let cpu: Vec<String> = cores.iter().map(|c| match c {
            None => "off".to_string(),
            Some((l, f)) => format!("{l}%@{f}"),
        }).collect();
        let unit = if mw { "mW" } else { "" };
        let sign = if temp < 0 { "-" } else { "" };
        let line = format!(
            "RAM {used}/{total}MB{sp}CPU [{}]{sp}GPU@{sign}{}.{:03}C{sp}GPU {cur}{unit}/{avg}{unit}\n",
            cpu.join(","), temp.unsigned_abs() / 1000, temp.unsigned_abs() % 1000,
        );
        let t = parse_line(&line).unwrap();
        prop_assert_eq!(t.skipped, 0);
        let ram = t.ram.unwrap();
        prop_assert_eq!((ram.used_mb, ram.total_mb), (used, total));
        prop_assert_eq!(t.cpus.len(), cores.len());
        for (c, g) in t.cpus.iter().zip(&cores) {
            match g {
                None => prop_assert_eq!(*c, Cpu::Off),
                Some((l, f)) => prop_assert_eq!(*c, Cpu::Online { load_pct: *l, freq_mhz: Some(*f) }),
            }
        }
        prop_assert_eq!(t.temp("GPU").unwrap().current.0, temp);
        let r = t.rail("GPU").unwrap();
        prop_assert_eq!((r.current_mw(), r.average_mw()), (cur, Some(avg)));
    }
}
