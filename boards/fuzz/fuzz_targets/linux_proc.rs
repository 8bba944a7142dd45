#![no_main]
//! Arbitrary text into every `/proc` parser of `linux` (stat, meminfo, loadavg, mounts, filesystems,
//! net/dev) and the arithmetic on what they return: none panics, overflows or loops.

use chouette_boards::linux::{
    busy_percent, decode_octal, is_physical_listed, mounts, net_dev, parse_loadavg, parse_meminfo,
    parse_stat_cpu, physical_fstypes, physical_mounts, stat_cores, CpuTimes,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else { return };
    let mut previous = CpuTimes::default();
    if let Ok(all) = parse_stat_cpu(text) {
        assert!(all.busy() <= all.total());
        let pct = busy_percent(&previous, &all);
        assert!((0.0..=100.0).contains(&pct));
        previous = all;
    }
    for (_, core) in stat_cores(text).flatten() {
        let pct = busy_percent(&previous, &core);
        assert!((0.0..=100.0).contains(&pct));
        assert!(core.busy() <= core.total());
    }
    if let Ok(m) = parse_meminfo(text) {
        assert!(m.used_bytes() <= m.total);
        let _ = m.available_bytes();
    }
    if let Ok(l) = parse_loadavg(text) {
        assert!(l.one.is_finite() && l.five.is_finite() && l.fifteen.is_finite());
    }
    let mut buf = [0u8; 256];
    for m in mounts(text) {
        assert!(!m.device.is_empty() && text.contains(m.device));
        if let Some(decoded) = decode_octal(m.mount_point, &mut buf) {
            assert!(decoded.len() <= m.mount_point.len());
        }
        let _ = is_physical_listed(&m, text);
    }
    let _ = physical_mounts(text).count();
    let _ = physical_fstypes(text).count();
    for dev in net_dev(text).flatten() {
        assert!(!dev.iface.is_empty() && dev.iface != "lo");
    }
});
