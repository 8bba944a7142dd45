//! Every captured tegrastats line parses, with exact values for the key fields; the original plugin's
//! expected output is reproduced exactly; Datadog's metric counts per sample match its test file.

use chouette_boards::tegrastats::{parse_line, Cpu, Iram, Lfb, Metric, Mts, Ram, Swap, Tegrastats};
use chouette_boards::MilliCelsius;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn on(load_pct: u16, freq: u32) -> Cpu {
    Cpu::Online { load_pct, freq_mhz: Some(freq) }
}

fn temps(t: &Tegrastats<'_>) -> Vec<(String, i32)> {
    t.temps.iter().map(|z| (z.zone.to_string(), z.current.0)).collect()
}

fn rails(t: &Tegrastats<'_>) -> Vec<(String, Vec<u32>)> {
    t.rails.iter().map(|r| (r.name.to_string(), r.values_mw.to_vec())).collect()
}

fn owned<const N: usize>(v: &[(&str, i32); N]) -> Vec<(String, i32)> {
    v.iter().map(|(a, b)| (a.to_string(), *b)).collect()
}

fn rails_owned(v: &[(&str, &[u32])]) -> Vec<(String, Vec<u32>)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_vec())).collect()
}

fn datadog(t: &Tegrastats<'_>) -> Vec<(String, Option<String>, f64)> {
    let mut out = Vec::new();
    t.datadog_metrics(|m: Metric<'_>| out.push((m.name.to_string(), m.tag.map(|t| t.to_string()), m.value)));
    out
}

fn engine(t: &Tegrastats<'_>, name: &str) -> (Option<u16>, Vec<u32>, bool, bool) {
    let e = t.engine(name).unwrap_or_else(|| panic!("no engine {name}"));
    (e.usage_pct, e.freqs_mhz.to_vec(), e.freq_is_array, e.off)
}

#[test]
fn nano_jp4_root() {
    let text = fixture("01-nano-jp4-root.txt");
    let t = parse_line(&text).unwrap();
    assert_eq!((t.skipped, t.overflowed, t.timestamp), (0, 0, None));
    assert_eq!(
        t.ram,
        Some(Ram { used_mb: 534, total_mb: 3964, lfb: Some(Lfb { blocks: 98, block_kb: 4096 }) })
    );
    assert_eq!(t.swap, Some(Swap { used_mb: 5, total_mb: 1982, cached_mb: Some(1) }));
    assert_eq!(t.iram, Some(Iram { used_kb: 0, total_kb: 252, lfb_kb: Some(252) }));
    assert_eq!(&t.cpus[..], &[on(16, 204), on(9, 204), on(0, 204), on(0, 204)]);
    assert_eq!(engine(&t, "EMC_FREQ"), (Some(0), vec![204], false, false));
    assert_eq!(engine(&t, "GR3D_FREQ"), (Some(0), vec![76], false, false));
    assert_eq!(engine(&t, "APE"), (None, vec![25], false, false));
    assert_eq!(
        temps(&t),
        owned(&[
            ("PLL", 34000),
            ("CPU", 36500),
            ("PMIC", 100000),
            ("GPU", 36000),
            ("AO", 39500),
            ("thermal", 36250)
        ])
    );
    assert_eq!(
        rails(&t),
        rails_owned(&[("POM_5V_IN", &[1022, 1022]), ("POM_5V_GPU", &[0, 0]), ("POM_5V_CPU", &[204, 204])])
    );
    let dd = datadog(&t);
    assert_eq!(dd.len(), 36);
    assert!(dd.contains(&("nvidia.jetson.mem.used".into(), None, 534.0 * 1048576.0)));
    assert!(dd.contains(&("nvidia.jetson.mem.lfb".into(), None, 4.0 * 1048576.0)));
    assert!(dd.contains(&("nvidia.jetson.mem.n_lfb".into(), None, 98.0)));
    assert!(dd.contains(&("nvidia.jetson.iram.lfb".into(), None, 252.0 * 1024.0)));
    assert!(dd.contains(&("nvidia.jetson.cpu.freq".into(), Some("cpu:0".into()), 204.0)));
    assert!(dd.contains(&("nvidia.jetson.temp".into(), Some("zone:PMIC".into()), 100.0)));
    assert!(dd.contains(&("nvidia.jetson.power.average".into(), Some("probe:POM_5V_IN".into()), 1022.0)));
}

#[test]
fn nano_jp4_nonroot() {
    let text = fixture("02-nano-jp4-nonroot.txt");
    let t = parse_line(&text).unwrap();
    assert_eq!((t.skipped, t.iram), (0, None));
    assert_eq!(t.ram.unwrap().lfb, Some(Lfb { blocks: 634, block_kb: 4096 }));
    assert_eq!(engine(&t, "EMC_FREQ"), (Some(0), vec![], false, false));
    assert_eq!(engine(&t, "GR3D_FREQ"), (Some(0), vec![], false, false));
    assert_eq!(t.engine("APE"), None);
    assert_eq!(t.temp("CPU").unwrap().current, MilliCelsius(40500));
    assert_eq!(t.rail("POM_5V_CPU").unwrap().values_mw.to_vec(), vec![123, 123]);
    let dd = datadog(&t);
    assert!(!dd.iter().any(|m| m.0 == "nvidia.jetson.gpu.freq" || m.0 == "nvidia.jetson.emc.freq"));
    assert!(dd.contains(&("nvidia.jetson.gpu.usage".into(), None, 0.0)));
}

#[test]
fn tx1() {
    let text = fixture("03-tx1.txt");
    let t = parse_line(&text).unwrap();
    assert_eq!((t.skipped, t.swap), (0, None));
    assert_eq!(t.ram.unwrap().used_mb, 1179);
    assert_eq!(engine(&t, "EMC_FREQ"), (Some(7), vec![408], false, false));
    assert_eq!(t.temp("Tdiode").unwrap().current, MilliCelsius(42750));
    assert_eq!(t.temp("Tboard").unwrap().current, MilliCelsius(42000));
    assert_eq!(
        rails(&t),
        rails_owned(&[("VDD_IN", &[2532, 2698]), ("VDD_CPU", &[76, 178]), ("VDD_GPU", &[19, 19])])
    );
    assert_eq!(datadog(&t).len(), 35);
}

#[test]
fn tx2_older_rails() {
    let text = fixture("04-tx2-older-rails.txt");
    let t = parse_line(&text).unwrap();
    assert_eq!(t.skipped, 0);
    assert_eq!(&t.cpus[..], &[on(2, 345), Cpu::Off, Cpu::Off, Cpu::Off, Cpu::Off, Cpu::Off]);
    assert_eq!(t.inactive_cpus(), 5);
    assert_eq!(engine(&t, "EMC_FREQ"), (Some(13), vec![40], false, false));
    assert_eq!(engine(&t, "APE"), (None, vec![150], false, false));
    assert_eq!(t.rails.len(), 6);
    assert_eq!(t.rail("VDD_DDR").unwrap().values_mw.to_vec(), vec![240, 348]);
    let dd = datadog(&t);
    assert!(dd.contains(&("nvidia.jetson.cpu.usage".into(), Some("cpu:1".into()), 0.0)));
    assert!(dd.contains(&("nvidia.jetson.cpu.freq".into(), Some("cpu:5".into()), 0.0)));
    assert!(dd.contains(&("nvidia.jetson.cpu.inactive_count".into(), None, 5.0)));
    assert!(dd.contains(&("nvidia.jetson.cpu.total_count".into(), None, 6.0)));
}

#[test]
fn tx2_jp4_sys_rails() {
    let text = fixture("05-tx2-jp4-sys-rails.txt");
    let t = parse_line(&text).unwrap();
    assert_eq!(t.skipped, 0);
    assert_eq!(&t.cpus[..], &[on(1, 345), Cpu::Off, Cpu::Off, on(1, 345), on(0, 345), on(2, 345)]);
    assert_eq!(t.swap, Some(Swap { used_mb: 0, total_mb: 3926, cached_mb: Some(0) }));
    assert_eq!(t.temp("BCPU").unwrap().current, MilliCelsius(37500));
    assert_eq!(t.rail("VDD_4V0_WIFI").unwrap().values_mw.to_vec(), vec![0, 0]);
    assert_eq!(t.rail("VDD_SYS_DDR").unwrap().values_mw.to_vec(), vec![883, 883]);
    assert_eq!(datadog(&t).len(), 45);
}

#[test]
fn agx_xavier_rails_clash_with_zones() {
    let text = fixture("07-agx-xavier-jp4-root.txt");
    let t = parse_line(&text).unwrap();
    assert_eq!(t.skipped, 0);
    assert_eq!(t.cpus.len(), 8);
    assert_eq!(t.inactive_cpus(), 4);
    assert_eq!(t.mts, Some(Mts { fg_pct: 0, bg_pct: 0 }));
    assert_eq!(t.temp("GPU").unwrap().current, MilliCelsius(37500));
    assert_eq!(t.temp("CPU").unwrap().current, MilliCelsius(37500));
    assert_eq!(t.temp("thermal").unwrap().current, MilliCelsius(36900));
    assert_eq!(
        rails(&t),
        rails_owned(&[
            ("GPU", &[0, 0]),
            ("CPU", &[311, 311]),
            ("SOC", &[932, 932]),
            ("CV", &[0, 0]),
            ("VDDRQ", &[621, 621]),
            ("SYS5V", &[1482, 1482])
        ])
    );
    assert_eq!(datadog(&t).len(), 49);
}

#[test]
fn agx_xavier_jp42_nonroot() {
    let text = fixture("08-agx-xavier-jp42-nonroot.txt");
    let t = parse_line(&text).unwrap();
    assert_eq!(t.skipped, 0);
    assert_eq!(
        t.ram,
        Some(Ram { used_mb: 14700, total_mb: 15692, lfb: Some(Lfb { blocks: 3, block_kb: 2048 }) })
    );
    assert_eq!(t.swap.unwrap().cached_mb, Some(23));
    assert_eq!(t.cpus.len(), 8);
    assert!(t.cpus.iter().all(|c| *c == on(0, 1190)));
    assert_eq!(t.rail("SOC").unwrap().values_mw.to_vec(), vec![2936, 2936]);
    assert_eq!(t.temp("PMIC").unwrap().current, MilliCelsius(100000));
}

#[test]
fn xavier_nx() {
    let text = fixture("09-xavier-nx-jp4.txt");
    let t = parse_line(&text).unwrap();
    assert_eq!(t.skipped, 0);
    assert_eq!(t.cpus[5], on(8, 1267));
    assert_eq!(engine(&t, "GR3D_FREQ"), (Some(62), vec![306], false, false));
    assert_eq!(t.temp("thermal").unwrap().current, MilliCelsius(42550));
    assert_eq!(t.rail("VDD_CPU_GPU_CV").unwrap().values_mw.to_vec(), vec![738, 738]);
    assert_eq!(datadog(&t).len(), 37);
}

#[test]
fn orin_nx_milliwatts() {
    let text = fixture("10-orin-nx16-jp5-mw.txt");
    let t = parse_line(&text).unwrap();
    assert_eq!(t.skipped, 0);
    assert_eq!(engine(&t, "VIC_FREQ"), (None, vec![729], false, false));
    assert_eq!(engine(&t, "APE"), (None, vec![174], false, false));
    assert_eq!(t.temps.len(), 9);
    assert_eq!(t.temp("CV0").unwrap().current, MilliCelsius(45812));
    assert_eq!(t.temp("tj").unwrap().current, MilliCelsius(48875));
    assert_eq!(
        rails(&t),
        rails_owned(&[
            ("VDD_IN", &[5299, 5299]),
            ("VDD_CPU_GPU_CV", &[773, 773]),
            ("VDD_SOC", &[1424, 1424])
        ])
    );
    let dd = datadog(&t);
    assert_eq!(dd.len(), 44);
    assert!(dd.contains(&("nvidia.jetson.temp".into(), Some("zone:tj".into()), 48.875)));
    assert!(dd.contains(&("nvidia.jetson.power.instant".into(), Some("probe:VDD_IN".into()), 5299.0)));
}

#[test]
fn agx_orin_12_cores() {
    let text = fixture("12-agx-orin64-jp6-nonroot.txt");
    let t = parse_line(&text).unwrap();
    assert_eq!(t.skipped, 0);
    assert_eq!(t.cpus.len(), 12);
    assert!(t.cpus.iter().all(|c| *c == on(0, 2201)));
    assert_eq!(t.engine("EMC_FREQ"), None);
    assert_eq!(engine(&t, "GR3D_FREQ"), (Some(0), vec![], false, false));
    assert_eq!(
        temps(&t),
        owned(&[
            ("cpu", 42000),
            ("soc2", 37843),
            ("soc0", 39187),
            ("gpu", 37750),
            ("tj", 42000),
            ("soc1", 37937)
        ])
    );
    assert_eq!(t.rail("VIN_SYS_5V0").unwrap().values_mw.to_vec(), vec![4442, 4442]);
    assert_eq!(datadog(&t).len(), 46);
}

#[test]
fn orin_nano_timestamp_array_engines_off() {
    let text = fixture("13-orin-nano8-jp6-root-timestamp.txt");
    let t = parse_line(&text).unwrap();
    assert_eq!(t.skipped, 0);
    assert_eq!(t.timestamp, Some("11-15-2024 08:38:09"));
    assert_eq!(
        t.ram,
        Some(Ram { used_mb: 6185, total_mb: 7620, lfb: Some(Lfb { blocks: 8, block_kb: 2048 }) })
    );
    assert_eq!(t.cpus.len(), 6);
    assert_eq!(engine(&t, "EMC_FREQ"), (Some(43), vec![2133], false, false));
    assert_eq!(engine(&t, "GR3D_FREQ"), (Some(63), vec![621], true, false));
    for name in ["NVDEC", "NVJPG", "NVJPG1", "VIC", "OFA"] {
        assert_eq!(engine(&t, name), (None, vec![], false, true), "{name}");
    }
    assert_eq!(engine(&t, "APE"), (None, vec![200], false, false));
    assert_eq!(t.temp("cpu").unwrap().current, MilliCelsius(53968));
    assert_eq!(t.rail("VDD_IN").unwrap().values_mw.to_vec(), vec![12479, 12479]);
    let dd = datadog(&t);
    assert!(dd.contains(&("nvidia.jetson.gpu.freq".into(), Some("gpc:0".into()), 621.0)));
    assert!(dd.contains(&("nvidia.jetson.gpu.usage".into(), None, 63.0)));
    assert_eq!(dd.len(), 37);
}

#[test]
fn orin_nano_nonroot_timestamp() {
    let text = fixture("14-orin-nano8-jp6-nonroot-timestamp.txt");
    let t = parse_line(&text).unwrap();
    assert_eq!(t.skipped, 0);
    assert_eq!(t.timestamp, Some("06-18-2025 11:25:24"));
    assert_eq!(t.swap, Some(Swap { used_mb: 1518, total_mb: 16384, cached_mb: Some(174) }));
    assert_eq!(t.cpus[4], on(2, 729));
    assert_eq!(t.temp("soc0").unwrap().current, MilliCelsius(50000));
    assert_eq!(t.rail("VDD_SOC").unwrap().values_mw.to_vec(), vec![1475, 1475]);
}

/// `tegrastats_line.txt` → exactly `tegrastats_line.expected.json` (names, tags, values, order).
#[test]
fn chouette_parity() {
    let line = fixture("tegrastats_line.txt");
    let expected: serde_json::Value =
        serde_json::from_str(&fixture("tegrastats_line.expected.json")).unwrap();
    let t = parse_line(&line).unwrap();
    assert_eq!(t.skipped, 0);
    let to_json = |m: Metric<'_>| {
        serde_json::json!({
            "metric": m.name,
            "tags": m.tag.map(|t| vec![t.to_string()]).unwrap_or_default(),
            "type": "gauge",
            "value": m.value,
        })
    };
    let mut ram = Vec::new();
    t.chouette_ram_metrics(|m| ram.push(to_json(m)));
    let mut temp = Vec::new();
    t.chouette_temperature_metrics(|m| temp.push(to_json(m)));
    assert_eq!(serde_json::json!({ "ram": ram, "temp": temp }), expected);
}

#[test]
fn chouette_no_ram_and_lowercase_pmic() {
    let text = fixture("tegrastats_no_ram.txt");
    let t = parse_line(&text).unwrap();
    let mut n = 0;
    t.chouette_ram_metrics(|_| n += 1);
    t.chouette_temperature_metrics(|_| n += 1);
    assert_eq!(n, 0);
    let t = parse_line("pmic@100C Pmic@99C gpu@40C tj@-5C CV0@-256C").unwrap();
    let mut zones = Vec::new();
    t.chouette_temperature_metrics(|m| zones.push((m.tag.unwrap().to_string(), m.value)));
    assert_eq!(zones, vec![("zone:gpu".to_string(), 40.0), ("zone:tj".to_string(), -5.0)]);
}

#[test]
fn every_fixture_line_parses_without_skips() {
    let dir = format!("{}/tests/data", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with(|c: char| c.is_ascii_digit()) || name == "tegrastats_line.txt" {
            let text = std::fs::read_to_string(&path).unwrap();
            let t = parse_line(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((t.skipped, t.overflowed), (0, 0), "{name}");
            assert!(
                t.ram.is_some() && !t.cpus.is_empty() && !t.temps.is_empty() && !t.rails.is_empty(),
                "{name}"
            );
            n += 1;
        }
    }
    assert_eq!(n, 13);
}
