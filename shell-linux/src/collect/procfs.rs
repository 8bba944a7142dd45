//! Minimal private parsers for Linux `/proc` files and the Jetson/Raspberry Pi text formats.
//!
//! Text in, values out, no I/O. They are kept in this one file so that, once the `boards` crate
//! (`chouette-boards`) is merged, each can be swapped for its `chouette_boards::linux`,
//! `chouette_boards::tegrastats` or `chouette_boards::rpi` counterpart.

/// Cumulative CPU times from the `cpu` line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// user + nice + system + idle + iowait + irq + softirq + steal (guest is inside user/nice).
    pub total: u64,
    /// idle + iowait.
    pub idle: u64,
}

impl CpuTimes {
    /// Busy percent between `earlier` and `self` (psutil's `cpu_percent`), rounded to 0.1;
    /// `None` when no time passed.
    pub fn busy_percent_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        if total == 0 {
            return None;
        }
        let idle = self.idle.saturating_sub(earlier.idle).min(total);
        let percent = (total - idle) as f64 * 100.0 / total as f64;
        Some((percent * 10.0).round() / 10.0)
    }
}

/// The aggregate `cpu` line of `/proc/stat`.
pub fn parse_stat_cpu(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut fields = [0u64; 8];
    let mut n = 0;
    for (slot, word) in fields.iter_mut().zip(line.split_ascii_whitespace().skip(1)) {
        *slot = word.parse().ok()?;
        n += 1;
    }
    if n < 4 {
        return None;
    }
    Some(CpuTimes { total: fields.iter().sum(), idle: fields[3] + fields[4] })
}

/// The `/proc/meminfo` values the host collector uses, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemInfo {
    /// MemTotal.
    pub total: u64,
    /// MemFree.
    pub free: u64,
    /// MemAvailable, or MemFree + Buffers + Cached on kernels before 3.14.
    pub available: u64,
}

impl MemInfo {
    /// Used memory as psutil ≥ 5.9 / 7 computes it: total − available.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
}

/// `/proc/meminfo` (`Key:   value kB`, KiB).
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let (mut total, mut free, mut available, mut buffers, mut cached) = (None, None, None, 0, 0);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let mut words = rest.split_ascii_whitespace();
        let Some(Ok(value)) = words.next().map(str::parse::<u64>) else { continue };
        let bytes = if words.next() == Some("kB") { value.saturating_mul(1024) } else { value };
        match key {
            "MemTotal" => total = Some(bytes),
            "MemFree" => free = Some(bytes),
            "MemAvailable" => available = Some(bytes),
            "Buffers" => buffers = bytes,
            "Cached" => cached = bytes,
            _ => {}
        }
    }
    let (total, free) = (total?, free?);
    Some(MemInfo { total, free, available: available.unwrap_or(free + buffers + cached) })
}

/// The 1-minute load average, first field of `/proc/loadavg`.
pub fn parse_loadavg_1m(text: &str) -> Option<f64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// One line of `/proc/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The device (`/dev/mmcblk0p1`).
    pub device: String,
    /// Where it is mounted, with `\040`-style escapes decoded.
    pub mountpoint: String,
    /// The filesystem type.
    pub fstype: String,
}

/// `/proc/mounts`: `device mountpoint fstype options 0 0`.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut w = line.split_ascii_whitespace();
            Some(Mount {
                device: unescape(w.next()?),
                mountpoint: unescape(w.next()?),
                fstype: w.next()?.to_owned(),
            })
        })
        .collect()
}

/// Decodes the kernel's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = bytes[i + 1..i + 4].iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `nodev` filesystem types listed in `/proc/filesystems` are virtual; the others physical.
pub fn parse_physical_fstypes(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with("nodev"))
        .filter_map(|l| l.split_ascii_whitespace().next().map(str::to_owned))
        .collect()
}

/// Pseudo filesystem types, used when `/proc/filesystems` cannot be read.
pub const PSEUDO_FSTYPES: [&str; 22] = [
    "proc",
    "sysfs",
    "devtmpfs",
    "tmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "overlay",
    "securityfs",
    "pstore",
    "debugfs",
    "tracefs",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "autofs",
    "bpf",
    "binfmt_misc",
    "ramfs",
    "nsfs",
    "squashfs",
];

/// Bytes received and sent by one interface, from `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDev {
    /// The interface name.
    pub iface: String,
    /// Received bytes since boot.
    pub rx_bytes: u64,
    /// Sent bytes since boot.
    pub tx_bytes: u64,
}

/// `/proc/net/dev` (two header lines, then `iface: 8 rx counters 8 tx counters`).
pub fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .filter_map(|line| {
            let (iface, counters) = line.split_once(':')?;
            let mut w = counters.split_ascii_whitespace();
            let rx_bytes = w.next()?.parse().ok()?;
            let tx_bytes = w.nth(7)?.parse().ok()?;
            Some(NetDev { iface: iface.trim().to_owned(), rx_bytes, tx_bytes })
        })
        .collect()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `RAM used/totalMB` of a tegrastats line (the last match, `\bRAM\b` so `VRAM` does not
/// count), in MB.
pub fn tegrastats_ram_mb(line: &str) -> Option<(u64, u64)> {
    let bytes = line.as_bytes();
    let mut found = None;
    let mut from = 0;
    while let Some(pos) = line[from..].find("RAM ").map(|p| p + from) {
        from = pos + 4;
        if pos > 0 && is_word(bytes[pos - 1]) {
            continue;
        }
        let rest = &line[pos + 4..];
        let Some((used, rest)) = rest.split_once('/') else { continue };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if !rest[digits..].starts_with("MB") {
            continue;
        }
        if let (Ok(used), Ok(total)) = (used.parse(), rest[..digits].parse()) {
            found = Some((used, total));
        }
    }
    found
}

/// Every `zone@tempC` of a tegrastats line, except `PMIC` (any case) and the `-256` "no sensor"
/// reading. Unlike the original regex, a negative temperature is accepted and a malformed
/// number (`45.5.5C`) is skipped rather than crashing.
pub fn tegrastats_temperatures(line: &str) -> Vec<(&str, f64)> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    for (at, _) in line.match_indices('@') {
        let start = bytes[..at].iter().rposition(|b| !is_word(*b)).map_or(0, |p| p + 1);
        let zone = &line[start..at];
        if zone.is_empty() || zone.eq_ignore_ascii_case("pmic") {
            continue;
        }
        let rest = &line[at + 1..];
        let sign = usize::from(rest.starts_with('-'));
        let len = sign + rest[sign..].bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let after = &rest.as_bytes()[len..];
        if len == sign || after.first() != Some(&b'C') || after.get(1).is_some_and(|b| is_word(*b)) {
            continue;
        }
        match rest[..len].parse::<f64>() {
            Ok(t) if t > -256.0 => out.push((zone, t)),
            _ => {}
        }
    }
    out
}

/// A thermal zone's `temp` file: millidegrees Celsius → °C.
pub fn parse_millidegrees(text: &str) -> Option<f64> {
    text.trim().parse::<i64>().ok().map(|m| m as f64 / 1000.0)
}

/// `vcgencmd measure_temp` output: `temp=44.4'C` → 44.4.
pub fn parse_vcgencmd_temp(text: &str) -> Option<f64> {
    let value = text.trim().strip_prefix("temp=")?;
    value.trim_end_matches("'C").trim_end_matches('C').parse().ok()
}

/// `vcgencmd get_throttled` output: `throttled=0x50005` → the bit field.
pub fn parse_vcgencmd_throttled(text: &str) -> Option<u32> {
    let value = text.trim().strip_prefix("throttled=")?;
    match value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

/// The `get_throttled` flags: (bit, name).
pub const THROTTLED_FLAGS: [(u32, &str); 8] = [
    (0, "under_voltage"),
    (1, "arm_freq_capped"),
    (2, "throttled"),
    (3, "soft_temp_limit"),
    (16, "under_voltage_occurred"),
    (17, "arm_freq_capped_occurred"),
    (18, "throttled_occurred"),
    (19, "soft_temp_limit_occurred"),
];

/// Why a DS18B20 `w1_slave` read was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum W1Reject {
    /// Nothing was read (the conversion failed).
    Empty,
    /// The scratchpad CRC did not match (`crc=.. NO`).
    CrcNo,
    /// `t=85000` with scratchpad byte 6 = 0x0C: the power-on value, no conversion ran.
    PowerOnReset,
    /// An all-zero scratchpad: data line stuck low or sensor unplugged.
    AllZero,
    /// Not the two-line `w1_slave` format.
    Malformed,
}

impl W1Reject {
    /// The reason as a tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            W1Reject::Empty => "empty",
            W1Reject::CrcNo => "crc",
            W1Reject::PowerOnReset => "power_on_reset",
            W1Reject::AllZero => "all_zero",
            W1Reject::Malformed => "malformed",
        }
    }
}

/// A DS18B20 `w1_slave` file → °C.
pub fn parse_w1_slave(text: &str) -> Result<f64, W1Reject> {
    if text.trim().is_empty() {
        return Err(W1Reject::Empty);
    }
    let mut lines = text.lines();
    let first = lines.next().ok_or(W1Reject::Malformed)?;
    let second = lines.next().ok_or(W1Reject::Malformed)?;
    let (scratch, crc) = first.split_once(':').ok_or(W1Reject::Malformed)?;
    match crc.split_ascii_whitespace().last() {
        Some("YES") => {}
        Some("NO") => return Err(W1Reject::CrcNo),
        _ => return Err(W1Reject::Malformed),
    }
    let scratch: Vec<u8> =
        scratch.split_ascii_whitespace().filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
    if scratch.len() != 9 {
        return Err(W1Reject::Malformed);
    }
    if scratch.iter().all(|b| *b == 0) {
        return Err(W1Reject::AllZero);
    }
    let (_, t) = second.rsplit_once("t=").ok_or(W1Reject::Malformed)?;
    let milli: i64 = t.trim().parse().map_err(|_| W1Reject::Malformed)?;
    if milli == 85_000 && scratch[6] == 0x0c {
        return Err(W1Reject::PowerOnReset);
    }
    Ok(milli as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINUX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/linux/");
    const RPI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rpi/");

    fn read(dir: &str, name: &str) -> String {
        std::fs::read_to_string(format!("{dir}{name}")).expect("fixture")
    }

    #[test]
    fn linux_fixtures_parse() {
        let cpu = parse_stat_cpu(&read(LINUX, "proc_stat.txt")).expect("cpu line");
        assert_eq!(cpu.total, 107376 + 11033 + 83484 + 1435 + 424 + 544);
        assert_eq!(cpu.idle, 83484 + 1435);
        let later = CpuTimes { total: cpu.total + 200, idle: cpu.idle + 150 };
        assert_eq!(later.busy_percent_since(&cpu), Some(25.0));
        assert_eq!(cpu.busy_percent_since(&cpu), None);

        let mem = parse_meminfo(&read(LINUX, "proc_meminfo.txt")).expect("meminfo");
        assert_eq!(mem.available, 23157764 * 1024);
        assert_eq!(mem.used(), (24731700 - 23157764) * 1024);
        assert_eq!(parse_loadavg_1m(&read(LINUX, "proc_loadavg.txt")), Some(1.46));

        let mounts = parse_mounts(&read(LINUX, "proc_mounts.txt"));
        assert!(mounts.iter().any(|m| m.device == "/dev/vda" && m.mountpoint == "/" && m.fstype == "ext4"));
        let net = parse_net_dev(&read(LINUX, "proc_net_dev.txt"));
        assert_eq!(net.len(), 4);
        assert_eq!(net[3], NetDev { iface: "eth0".into(), rx_bytes: 230491953, tx_bytes: 850074 });
    }

    #[test]
    fn mount_escapes_and_fstypes() {
        let m = parse_mounts("/dev/sda1 /media/my\\040disk vfat rw 0 0\n");
        assert_eq!(m[0].mountpoint, "/media/my disk");
        let types = parse_physical_fstypes("nodev\tsysfs\n\text4\nnodev\ttmpfs\n\tvfat\n");
        assert_eq!(types, ["ext4", "vfat"]);
        assert_eq!(
            parse_meminfo("MemTotal: 10 kB\nMemFree: 2 kB\nBuffers: 1 kB\nCached: 3 kB\n")
                .map(|m| m.available),
            Some(6144)
        );
    }

    #[test]
    fn tegrastats_line_as_the_original() {
        let line = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/chouette/tegrastats_line.txt"
        ))
        .expect("fixture");
        assert_eq!(tegrastats_ram_mb(&line), Some((6266, 7860)));
        let temps = tegrastats_temperatures(&line);
        let expected = [
            ("PLL", 52.0),
            ("MCPU", 52.0),
            ("Tboard", 50.0),
            ("GPU", 51.5),
            ("BCPU", 52.0),
            ("thermal", 51.8),
            ("Tdiode", 50.0),
        ];
        assert_eq!(temps, expected);
        assert_eq!(tegrastats_ram_mb("VRAM 6266/7860MB CPU [20%@345]"), None);
        assert!(tegrastats_temperatures("VRAM 6266/7860MB CPU [20%@345]").is_empty());
        assert_eq!(
            tegrastats_temperatures("pmic@100C cpu@-5C gpu@-256C bad@45.5.5C x@0C"),
            [("cpu", -5.0), ("x", 0.0)]
        );
    }

    #[test]
    fn every_tegrastats_fixture_has_ram_and_temperatures() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tegrastats/");
        for entry in std::fs::read_dir(dir).expect("dir").flatten() {
            let text = std::fs::read_to_string(entry.path()).expect("fixture");
            for line in text.lines().filter(|l| l.contains("RAM ")) {
                assert!(tegrastats_ram_mb(line).is_some(), "{line}");
                assert!(!tegrastats_temperatures(line).is_empty(), "{line}");
                assert!(tegrastats_temperatures(line).iter().all(|(z, _)| !z.eq_ignore_ascii_case("pmic")));
            }
        }
    }

    #[test]
    fn rpi_fixtures() {
        assert_eq!(parse_millidegrees(&read(RPI, "thermal_zone0_temp.txt")), Some(49.768));
        assert_eq!(parse_vcgencmd_temp(&read(RPI, "vcgencmd_measure_temp.txt")), Some(44.4));
        assert_eq!(parse_vcgencmd_throttled(&read(RPI, "vcgencmd_get_throttled_0x50005.txt")), Some(0x50005));
        assert_eq!(parse_vcgencmd_throttled(&read(RPI, "vcgencmd_get_throttled_ok.txt")), Some(0));
        assert_eq!(parse_w1_slave(&read(RPI, "w1_slave_ok.txt")), Ok(23.125));
        assert_eq!(parse_w1_slave(&read(RPI, "w1_slave_negative_constructed.txt")), Ok(-5.25));
        assert_eq!(parse_w1_slave(&read(RPI, "w1_slave_crc_no.txt")), Err(W1Reject::CrcNo));
        assert_eq!(
            parse_w1_slave(&read(RPI, "w1_slave_85000_power_on_reset.txt")),
            Err(W1Reject::PowerOnReset)
        );
        assert_eq!(parse_w1_slave(&read(RPI, "w1_slave_all_zero_unplugged.txt")), Err(W1Reject::AllZero));
        assert_eq!(parse_w1_slave(&read(RPI, "w1_slave_empty_read_error.txt")), Err(W1Reject::Empty));
    }
}
