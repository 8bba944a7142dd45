//! Linux host statistics from `/proc` text and `statvfs` results, computed as psutil does.
//!
//! Pure text-in/value-out: the agent reads the files (under an injectable root, so tests run on fixture
//! trees) and hands the text here. Nothing allocates; lists are iterators over the borrowed text.

use crate::number::{parse_u32, parse_u64};
use crate::ParseError;

/// Cumulative CPU times from a `/proc/stat` `cpu` line, in USER_HZ ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// Normal processes in user mode (includes `guest`).
    pub user: u64,
    /// Niced processes in user mode (includes `guest_nice`).
    pub nice: u64,
    /// Kernel mode.
    pub system: u64,
    /// Idle.
    pub idle: u64,
    /// Waiting for I/O.
    pub iowait: u64,
    /// Servicing interrupts.
    pub irq: u64,
    /// Servicing softirqs.
    pub softirq: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
    /// Running a guest (already counted in `user`).
    pub guest: u64,
    /// Running a niced guest (already counted in `nice`).
    pub guest_nice: u64,
}

impl CpuTimes {
    /// All time, as psutil counts it: the sum of every field less `guest` and `guest_nice`
    /// (saturating: a corrupt line of 20-digit counters must not overflow).
    pub fn total(&self) -> u64 {
        let sum = [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
            self.guest,
            self.guest_nice,
        ]
        .iter()
        .fold(0u64, |a, v| a.saturating_add(*v));
        sum.saturating_sub(self.guest).saturating_sub(self.guest_nice)
    }

    /// Busy time: total − idle − iowait.
    pub fn busy(&self) -> u64 {
        self.total().saturating_sub(self.idle).saturating_sub(self.iowait)
    }
}

/// System-wide busy percentage between two samples, as `psutil.cpu_percent()`: busy delta over total
/// delta, rounded to one decimal (half away from zero), clamped to 0–100. 0.0 when no time passed or the
/// counters went backwards.
pub fn busy_percent(previous: &CpuTimes, current: &CpuTimes) -> f64 {
    let (b0, b1) = (previous.busy(), current.busy());
    let (t0, t1) = (previous.total(), current.total());
    if b1 <= b0 || t1 <= t0 {
        return 0.0;
    }
    let busy = u128::from(b1 - b0);
    let all = u128::from(t1 - t0);
    let tenths = (busy * 1000 + all / 2) / all;
    (tenths.min(1000) as f64) / 10.0
}

fn parse_cpu_fields(rest: &str) -> Result<CpuTimes, ParseError> {
    let mut v = [0u64; 10];
    let mut n = 0;
    for (slot, word) in v.iter_mut().zip(rest.split_ascii_whitespace()) {
        *slot = parse_u64(word).ok_or(ParseError::InvalidNumber("cpu"))?;
        n += 1;
    }
    if n < 4 {
        return Err(ParseError::Missing("cpu idle"));
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice] = v;
    Ok(CpuTimes { user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice })
}

/// Parses the aggregate `cpu ` line of `/proc/stat` (fields missing on old kernels read as 0).
pub fn parse_stat_cpu(text: &str) -> Result<CpuTimes, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let line = text.lines().find_map(|l| l.strip_prefix("cpu ")).ok_or(ParseError::Missing("cpu"))?;
    parse_cpu_fields(line)
}

/// The per-core `cpuN` lines of `/proc/stat`, as `(N, times)`.
pub fn stat_cores(text: &str) -> impl Iterator<Item = Result<(u32, CpuTimes), ParseError>> + '_ {
    text.lines().filter_map(|l| {
        let rest = l.strip_prefix("cpu")?;
        let (idx, fields) = rest.split_once(' ')?;
        let idx = parse_u32(idx)?;
        Some(parse_cpu_fields(fields).map(|t| (idx, t)))
    })
}

/// The fields of `/proc/meminfo` a host collector uses, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: u64,
    /// `MemFree`.
    pub free: u64,
    /// `MemAvailable` (kernel ≥ 3.14).
    pub available: Option<u64>,
    /// `Buffers`.
    pub buffers: u64,
    /// `Cached`.
    pub cached: u64,
    /// `SReclaimable`.
    pub sreclaimable: u64,
    /// `Shmem`.
    pub shmem: u64,
    /// `SwapTotal`.
    pub swap_total: u64,
    /// `SwapFree`.
    pub swap_free: u64,
}

impl MemInfo {
    /// Available memory: `MemAvailable`, or (old kernels) `MemFree + Buffers + Cached`.
    pub fn available_bytes(&self) -> u64 {
        self.available.unwrap_or(self.free.saturating_add(self.buffers).saturating_add(self.cached))
    }

    /// Used memory as psutil 7 computes it: total − available (0 if negative).
    pub fn used_bytes(&self) -> u64 {
        self.total.saturating_sub(self.available_bytes())
    }
}

/// Parses `/proc/meminfo` (`Key:   value kB`, KiB).
pub fn parse_meminfo(text: &str) -> Result<MemInfo, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let mut m = MemInfo::default();
    let mut have_total = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let mut words = rest.split_ascii_whitespace();
        let Some(num) = words.next() else { continue };
        let scale = if words.next() == Some("kB") { 1024 } else { 1 };
        let slot = match key {
            "MemTotal" => {
                have_total = true;
                &mut m.total
            }
            "MemFree" => &mut m.free,
            "MemAvailable" => m.available.insert(0),
            "Buffers" => &mut m.buffers,
            "Cached" => &mut m.cached,
            "SReclaimable" => &mut m.sreclaimable,
            "Shmem" => &mut m.shmem,
            "SwapTotal" => &mut m.swap_total,
            "SwapFree" => &mut m.swap_free,
            _ => continue,
        };
        *slot =
            parse_u64(num).and_then(|v| v.checked_mul(scale)).ok_or(ParseError::InvalidNumber("meminfo"))?;
    }
    if !have_total {
        return Err(ParseError::Missing("MemTotal"));
    }
    Ok(m)
}

/// `/proc/loadavg`: `1m 5m 15m running/total last_pid`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadAvg {
    /// 1-minute load average.
    pub one: f64,
    /// 5-minute load average.
    pub five: f64,
    /// 15-minute load average.
    pub fifteen: f64,
    /// Runnable scheduling entities.
    pub running: u32,
    /// Scheduling entities that exist.
    pub total: u32,
}

/// Parses `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Result<LoadAvg, ParseError> {
    let mut w = text.split_ascii_whitespace();
    let mut load = |name| -> Result<f64, ParseError> {
        let s = w.next().ok_or(ParseError::Missing(name))?;
        s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or(ParseError::InvalidNumber(name))
    };
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let one = load("1m")?;
    let five = load("5m")?;
    let fifteen = load("15m")?;
    let (running, total) = w
        .next()
        .and_then(|s| s.split_once('/'))
        .and_then(|(r, t)| Some((parse_u32(r)?, parse_u32(t)?)))
        .ok_or(ParseError::Missing("running/total"))?;
    Ok(LoadAvg { one, five, fifteen, running, total })
}

/// One `/proc/mounts` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount<'a> {
    /// The device (`/dev/vda`, `tmpfs`, ...).
    pub device: &'a str,
    /// The mount point as written: spaces and tabs are octal-escaped (`\040`); see [`decode_octal`].
    pub mount_point: &'a str,
    /// The filesystem type.
    pub fstype: &'a str,
    /// The mount options.
    pub options: &'a str,
}

/// Filesystem types that are never physical (kernel `nodev` filesystems and overlays), following
/// psutil's `disk_partitions(all=False)`, which keeps only types /proc/filesystems does not mark `nodev`.
pub const PSEUDO_FSTYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// `true` for a physical filesystem (not in [`PSEUDO_FSTYPES`], not a `fuse.*` helper) on a real device
/// (not `none`).
pub fn is_physical(m: &Mount<'_>) -> bool {
    m.device != "none" && !m.fstype.starts_with("fuse.") && !PSEUDO_FSTYPES.contains(&m.fstype)
}

/// Every well-formed `/proc/mounts` line (lines with fewer than four fields are skipped).
pub fn mounts(text: &str) -> impl Iterator<Item = Mount<'_>> {
    text.lines().filter_map(|l| {
        let mut w = l.split_ascii_whitespace();
        Some(Mount { device: w.next()?, mount_point: w.next()?, fstype: w.next()?, options: w.next()? })
    })
}

/// The filesystem types `/proc/filesystems` lists without the `nodev` mark: the ones backed by a block
/// device, which psutil's `disk_partitions(all=False)` keeps (`squashfs` and `fuseblk` included).
pub fn physical_fstypes(filesystems: &str) -> impl Iterator<Item = &str> {
    filesystems.lines().filter(|l| !l.starts_with("nodev")).filter_map(|l| l.split_ascii_whitespace().next())
}

/// Like [`is_physical`], but with the running kernel's own list (the text of `/proc/filesystems`)
/// instead of [`PSEUDO_FSTYPES`]: a type listed without `nodev` ([`physical_fstypes`]), on a real
/// device (not `none`).
pub fn is_physical_listed(m: &Mount<'_>, filesystems: &str) -> bool {
    m.device != "none" && physical_fstypes(filesystems).any(|t| t == m.fstype)
}

/// The physical mounts, each device once (its first mount point wins), as psutil `all=False` plus the
/// original plugin's de-duplication.
pub fn physical_mounts(text: &str) -> impl Iterator<Item = Mount<'_>> {
    mounts(text).enumerate().filter_map(move |(i, m)| {
        if !is_physical(&m) {
            return None;
        }
        let seen = mounts(text).take(i).any(|p| is_physical(&p) && p.device == m.device);
        (!seen).then_some(m)
    })
}

/// Decodes the kernel's octal escapes (`\040` space, `\011` tab, `\012`, `\134` backslash) into `buf`.
/// Returns `None` if `buf` is too small or the result is not UTF-8.
pub fn decode_octal<'b>(raw: &str, buf: &'b mut [u8]) -> Option<&'b str> {
    let b = raw.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        let byte = if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = b[i + 1..i + 4].iter().fold(0u16, |a, d| a * 8 + u16::from(d - b'0'));
            i += 4;
            u8::try_from(v).ok()?
        } else {
            i += 1;
            b[i - 1]
        };
        *buf.get_mut(n)? = byte;
        n += 1;
    }
    core::str::from_utf8(&buf[..n]).ok()
}

/// The result of `statvfs(2)` for one mount point (the fields a host collector uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatVfs {
    /// Fragment size (`f_frsize`), the unit of the block counts.
    pub f_frsize: u64,
    /// Size of the filesystem in `f_frsize` units.
    pub f_blocks: u64,
    /// Free blocks.
    pub f_bfree: u64,
    /// Free blocks for unprivileged users.
    pub f_bavail: u64,
    /// Inodes.
    pub f_files: u64,
    /// Free inodes.
    pub f_ffree: u64,
}

impl StatVfs {
    /// Total size in bytes: `f_blocks · f_frsize`.
    pub fn total_bytes(&self) -> u64 {
        self.f_blocks.saturating_mul(self.f_frsize)
    }

    /// Used bytes (psutil `disk_usage().used`): `(f_blocks − f_bfree) · f_frsize`.
    pub fn used_bytes(&self) -> u64 {
        self.f_blocks.saturating_sub(self.f_bfree).saturating_mul(self.f_frsize)
    }

    /// Bytes free to unprivileged users (psutil `disk_usage().free`): `f_bavail · f_frsize`.
    pub fn free_bytes(&self) -> u64 {
        self.f_bavail.saturating_mul(self.f_frsize)
    }
}

/// One interface's counters from `/proc/net/dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetDev<'a> {
    /// The interface name.
    pub iface: &'a str,
    /// Bytes received (cumulative since boot or driver load).
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// The interfaces of `/proc/net/dev`, skipping the two header lines and the loopback `lo` (as the
/// original's `network` metric does). `iface:` may be glued to the first counter when it is wide.
pub fn net_dev(text: &str) -> impl Iterator<Item = Result<NetDev<'_>, ParseError>> {
    text.lines().filter_map(|l| {
        let (iface, rest) = l.split_once(':')?;
        let iface = iface.trim();
        if iface.is_empty() || iface == "lo" || iface.contains('|') {
            return None;
        }
        let mut v = [0u64; 16];
        let mut n = 0;
        for (slot, w) in v.iter_mut().zip(rest.split_ascii_whitespace()) {
            match parse_u64(w) {
                Some(x) => *slot = x,
                None => return Some(Err(ParseError::InvalidNumber("net/dev"))),
            }
            n += 1;
        }
        if n < 10 {
            return Some(Err(ParseError::Missing("net/dev counters")));
        }
        Some(Ok(NetDev { iface, rx_bytes: v[0], rx_packets: v[1], tx_bytes: v[8], tx_packets: v[9] }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_percent_like_psutil() {
        let a = CpuTimes { user: 100, idle: 100, ..Default::default() };
        let b = CpuTimes { user: 150, idle: 150, iowait: 0, ..Default::default() };
        assert_eq!(busy_percent(&a, &b), 50.0);
        // guest is inside user: subtracting it keeps total honest.
        let c = CpuTimes { user: 200, idle: 150, guest: 50, ..Default::default() };
        assert_eq!(c.total(), 350);
        assert_eq!(busy_percent(&a, &c), 66.7);
        // iowait counts as not busy.
        let d = CpuTimes { user: 100, idle: 100, iowait: 100, ..Default::default() };
        assert_eq!(busy_percent(&a, &d), 0.0);
        assert_eq!(busy_percent(&b, &a), 0.0);
        assert_eq!(busy_percent(&a, &a), 0.0);
    }

    #[test]
    fn huge_counters_saturate_instead_of_overflowing() {
        // Found by reading while writing the linux_proc fuzz target (10 minutes did not reach it).
        let t = parse_stat_cpu("cpu  18446744073709551615 1 0 0\n").unwrap();
        assert_eq!((t.total(), t.busy()), (u64::MAX, u64::MAX));
        let m = parse_meminfo("MemTotal: 1 kB\nMemFree: 18014398509481983 kB\nBuffers: 1 kB\n").unwrap();
        assert_eq!((m.available_bytes(), m.used_bytes()), (u64::MAX, 0));
    }

    #[test]
    fn octal() {
        let mut buf = [0u8; 32];
        assert_eq!(decode_octal("/mnt/my\\040disk", &mut buf), Some("/mnt/my disk"));
        assert_eq!(decode_octal("/a\\", &mut buf), Some("/a\\"));
        assert_eq!(decode_octal("/x\\777", &mut buf), None);
        assert_eq!(decode_octal("/very/long/path/that/overflows/the/buffer", &mut buf), None);
    }

    #[test]
    fn filesystems_list() {
        let fs = "nodev\tsysfs\n\text4\nnodev\ttmpfs\n\tvfat\n\tsquashfs\n";
        let mut types = physical_fstypes(fs);
        assert_eq!(
            (types.next(), types.next(), types.next(), types.next()),
            (Some("ext4"), Some("vfat"), Some("squashfs"), None)
        );
        let m = |device, fstype| Mount { device, mount_point: "/", fstype, options: "rw" };
        assert!(is_physical_listed(&m("/dev/sda1", "vfat"), fs));
        assert!(is_physical_listed(&m("/dev/loop0", "squashfs"), fs));
        assert!(!is_physical_listed(&m("tmpfs", "tmpfs"), fs));
        assert!(!is_physical_listed(&m("none", "ext4"), fs));
        assert!(!is_physical_listed(&m("/dev/sda1", "btrfs"), fs));
        assert!(!is_physical_listed(&m("/dev/sda1", "ext4"), ""));
    }

    #[test]
    fn errors() {
        assert_eq!(parse_meminfo(""), Err(ParseError::Empty));
        assert_eq!(parse_meminfo("MemFree: 1 kB"), Err(ParseError::Missing("MemTotal")));
        assert_eq!(parse_loadavg("1.0 2.0"), Err(ParseError::Missing("15m")));
        assert_eq!(parse_loadavg("a 2.0 3 1/2 5"), Err(ParseError::InvalidNumber("1m")));
        assert_eq!(parse_stat_cpu("intr 1"), Err(ParseError::Missing("cpu")));
        let old = MemInfo { total: 10, free: 2, buffers: 1, cached: 3, ..Default::default() };
        assert_eq!(old.used_bytes(), 4);
    }
}
