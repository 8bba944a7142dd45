//! `host`: CPU, filesystems, load, memory and network of the machine (compat §6.1), from
//! `/proc` and `statvfs` under an injectable root (`CHOUETTE_PROC_ROOT`, default `/`).
//!
//! | key | metrics | tags | unit |
//! |---|---|---|---|
//! | `cpu` | `Chouette.host.cpu.percentage` (busy % since the previous capture; none at the first) | | percent |
//! | `fs` | `Chouette.host.fs.used`, `Chouette.host.fs.free` (free to non-root users) | `device:` | bytes |
//! | `la` | `Chouette.host.la` (1 minute) | `period:1m` | load |
//! | `ram` | `Chouette.host.memory.used` (total − available), `Chouette.host.memory.available` | | bytes |
//! | `network` | `Chouette.host.network.bytes.sent`, `.recv` (cumulative since boot), not `lo` | `iface:` | bytes |
//!
//! The parsing and the psutil arithmetic are `chouette_boards::linux`'s; this module reads the files.
//! Physical filesystems: the types `/proc/filesystems` lists without `nodev`, or, when it cannot be read,
//! not in `chouette_boards::linux::PSEUDO_FSTYPES` (nor `fuse.*`); never on device `none`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chouette_boards::linux::{self, CpuTimes, StatVfs};

use super::{under, CollectError, Collector, PluginConfigError, PluginVars, Point};
use crate::config::vars;
use crate::limits::HOST_MAX_PATH_BYTES;

/// Where filesystem sizes come from: the real `statvfs` or a test double.
pub type StatFs = fn(&Path) -> std::io::Result<StatVfs>;

/// The real `statvfs(2)`, through rustix.
pub fn statvfs(path: &Path) -> std::io::Result<StatVfs> {
    let s = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(StatVfs {
        f_frsize: s.f_frsize,
        f_blocks: s.f_blocks,
        f_bfree: s.f_bfree,
        f_bavail: s.f_bavail,
        f_files: s.f_files,
        f_ffree: s.f_ffree,
    })
}

/// The metric groups `HOST_COLLECTOR_METRICS` may name.
pub const GROUPS: [&str; 5] = ["cpu", "fs", "la", "ram", "network"];

/// The `host` collector's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `CHOUETTE_PROC_ROOT`.
    pub root: PathBuf,
    /// `HOST_COLLECTOR_METRICS`, lower-cased, among [`GROUPS`].
    pub groups: Vec<String>,
}

impl Settings {
    /// From the plugin variables, through their table entries.
    pub fn from_vars(vars: &PluginVars) -> Result<Settings, PluginConfigError> {
        Ok(Settings { root: super::root(vars)?, groups: vars::HOST_COLLECTOR_METRICS.list(vars)? })
    }
}

/// The `host` collector.
pub struct Host {
    root: PathBuf,
    groups: Vec<String>,
    statfs: StatFs,
    previous_cpu: Option<CpuTimes>,
}

impl Host {
    /// From its [`Settings`].
    pub fn from_vars(vars: &PluginVars) -> Result<Host, PluginConfigError> {
        let settings = Settings::from_vars(vars)?;
        Ok(Host::new(settings.root, settings.groups, statvfs))
    }

    /// A collector reading under `root`, for `groups`, measuring filesystems with `statfs`.
    pub fn new(root: PathBuf, groups: Vec<String>, statfs: StatFs) -> Host {
        let mut host = Host { root, groups, statfs, previous_cpu: None };
        // The first CPU sample is the reference, as psutil's import-time call.
        if host.groups.iter().any(|g| g == "cpu") {
            host.previous_cpu = host.read("/proc/stat").ok().and_then(|t| linux::parse_stat_cpu(&t).ok());
        }
        host
    }

    fn read(&self, absolute: &str) -> Result<String, CollectError> {
        let path = under(&self.root, absolute);
        std::fs::read_to_string(&path).map_err(|e| CollectError::io(path.display().to_string(), e))
    }

    fn cpu(&mut self, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let text = self.read("/proc/stat")?;
        let now =
            linux::parse_stat_cpu(&text).map_err(|e| CollectError::parse("/proc/stat", e.to_string()))?;
        // No time passed (or the counters went back): no point, never a fake 0.
        if let Some(previous) = self.previous_cpu.filter(|p| now.total() > p.total()) {
            out.push(Point::new("Chouette.host.cpu.percentage", linux::busy_percent(&previous, &now)));
        }
        self.previous_cpu = Some(now);
        Ok(())
    }

    fn fs(&self, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let mounts = self.read("/proc/mounts")?;
        let filesystems = self.read("/proc/filesystems").ok();
        let mut seen = BTreeSet::new();
        let mut failures = Vec::new();
        let (mut device_buf, mut path_buf) = ([0u8; HOST_MAX_PATH_BYTES], [0u8; HOST_MAX_PATH_BYTES]);
        for mount in linux::mounts(&mounts) {
            let is_physical = match &filesystems {
                Some(list) => linux::is_physical_listed(&mount, list),
                None => linux::is_physical(&mount),
            };
            let device = linux::decode_octal(mount.device, &mut device_buf).unwrap_or(mount.device);
            if !is_physical || !seen.insert(device.to_owned()) {
                continue;
            }
            let mount_point =
                linux::decode_octal(mount.mount_point, &mut path_buf).unwrap_or(mount.mount_point);
            match (self.statfs)(&under(&self.root, mount_point)) {
                Ok(usage) => {
                    out.push(
                        Point::new("Chouette.host.fs.used", usage.used_bytes() as f64).tag("device", device),
                    );
                    out.push(
                        Point::new("Chouette.host.fs.free", usage.free_bytes() as f64).tag("device", device),
                    );
                }
                // One unreadable mountpoint must not hide the others (compat §7 item 13).
                Err(e) => failures.push(format!("{mount_point}: {e}")),
            }
        }
        if !failures.is_empty() {
            log::warn!("mounts={failures:?}: statvfs failed; their fs metrics are skipped");
        }
        Ok(())
    }

    fn la(&self, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let load = linux::parse_loadavg(&self.read("/proc/loadavg")?)
            .map_err(|e| CollectError::parse("/proc/loadavg", e.to_string()))?;
        out.push(Point::new("Chouette.host.la", load.one).tag("period", "1m"));
        Ok(())
    }

    fn ram(&self, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let mem = linux::parse_meminfo(&self.read("/proc/meminfo")?)
            .map_err(|e| CollectError::parse("/proc/meminfo", e.to_string()))?;
        out.push(Point::new("Chouette.host.memory.used", mem.used_bytes() as f64));
        out.push(Point::new("Chouette.host.memory.available", mem.available_bytes() as f64));
        Ok(())
    }

    fn network(&self, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let text = self.read("/proc/net/dev")?;
        let mut malformed = None;
        // `lo` and the header lines are skipped by the parser; a malformed line is reported after the
        // well-formed interfaces are out.
        for dev in linux::net_dev(&text) {
            match dev {
                Ok(dev) => {
                    out.push(
                        Point::new("Chouette.host.network.bytes.sent", dev.tx_bytes as f64)
                            .tag("iface", dev.iface),
                    );
                    out.push(
                        Point::new("Chouette.host.network.bytes.recv", dev.rx_bytes as f64)
                            .tag("iface", dev.iface),
                    );
                }
                Err(e) => malformed = malformed.or(Some(e)),
            }
        }
        match malformed {
            Some(e) => Err(CollectError::parse("/proc/net/dev", e.to_string())),
            None => Ok(()),
        }
    }
}

impl Collector for Host {
    fn name(&self) -> &str {
        "host"
    }

    /// Every configured group, in order. A group that fails is reported, after the others ran.
    fn collect(&mut self, _now: f64) -> Result<Vec<Point>, CollectError> {
        let mut out = Vec::with_capacity(16);
        let mut first_error = None;
        for group in self.groups.clone() {
            let result = match group.as_str() {
                "cpu" => self.cpu(&mut out),
                "fs" => self.fs(&mut out),
                "la" => self.la(&mut out),
                "ram" => self.ram(&mut out),
                "network" => self.network(&mut out),
                _ => Ok(()),
            };
            if let Err(e) = result {
                if first_error.is_none() {
                    first_error = Some(e);
                } else {
                    log::warn!("plugin=host group={group}: {e}");
                }
            }
        }
        match first_error {
            // Partial results are still worth storing: only fail when nothing was read.
            Some(e) if out.is_empty() => Err(e),
            Some(e) => {
                log::warn!("plugin=host: {e}; the other groups were collected");
                Ok(out)
            }
            None => Ok(out),
        }
    }
}

/// Builds a fake root from the fixture files of `boards/tests/data/linux` (tests, benches).
#[doc(hidden)]
pub fn fixture_root(fixtures: &Path, root: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(root.join("proc/net"))?;
    for (from, to) in [
        ("proc_stat.txt", "proc/stat"),
        ("proc_meminfo.txt", "proc/meminfo"),
        ("proc_loadavg.txt", "proc/loadavg"),
        ("proc_mounts.txt", "proc/mounts"),
        ("proc_net_dev.txt", "proc/net/dev"),
    ] {
        std::fs::copy(fixtures.join(from), root.join(to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_statfs(_: &Path) -> std::io::Result<StatVfs> {
        // statvfs.txt for `/`: f_frsize=4096 f_blocks=66053021 f_bfree=62507514 f_bavail=20275965
        Ok(StatVfs {
            f_frsize: 4096,
            f_blocks: 66053021,
            f_bfree: 62507514,
            f_bavail: 20275965,
            ..StatVfs::default()
        })
    }

    fn fake_root() -> PathBuf {
        let root = std::env::temp_dir().join(format!(
            "chouette-host-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards/tests/data/linux");
        fixture_root(&fixtures, &root).expect("fake root");
        root
    }

    fn find<'a>(points: &'a [Point], name: &str) -> Vec<&'a Point> {
        points.iter().filter(|p| p.name == name).collect()
    }

    #[test]
    fn every_group_on_the_fixture_tree() {
        let root = fake_root();
        let groups = GROUPS.iter().map(|g| (*g).to_owned()).collect();
        let mut host = Host::new(root.clone(), groups, fixture_statfs);
        let points = host.collect(0.0).expect("collect");
        // Same /proc/stat twice: no time passed, no cpu point (never a fake 0).
        assert!(find(&points, "Chouette.host.cpu.percentage").is_empty());
        let avail = find(&points, "Chouette.host.memory.available");
        assert_eq!(avail[0].value, 23157764.0 * 1024.0);
        assert_eq!(find(&points, "Chouette.host.memory.used")[0].value, (24731700.0 - 23157764.0) * 1024.0);
        let la = find(&points, "Chouette.host.la");
        assert_eq!((la[0].value, la[0].tags.clone()), (1.46, vec![("period".into(), "1m".into())]));
        let used = find(&points, "Chouette.host.fs.used");
        assert_eq!(used.len(), 1, "only /dev/vda is physical: {used:?}");
        assert_eq!(used[0].tags, [("device".to_owned(), "/dev/vda".to_owned())]);
        assert_eq!(used[0].value, 14522396672.0);
        assert_eq!(find(&points, "Chouette.host.fs.free")[0].value, 83050352640.0);
        let sent = find(&points, "Chouette.host.network.bytes.sent");
        assert_eq!(sent.len(), 3, "lo excluded");
        assert!(sent.iter().any(|p| p.value == 850074.0 && p.tags[0].1 == "eth0"));
        // ifb0 sends 0 bytes: zeros ARE sent (compat §7 item 24 fixed).
        assert!(sent.iter().any(|p| p.value == 0.0 && p.tags[0].1 == "ifb0"));

        // Time passes: 200 ticks, 150 idle → 25 % busy.
        let stat = std::fs::read_to_string(root.join("proc/stat")).expect("stat");
        let bumped = stat.replacen("cpu  107376 0 11033 83484", "cpu  107426 0 11033 83634", 1);
        std::fs::write(root.join("proc/stat"), bumped).expect("write");
        let points = host.collect(1.0).expect("collect");
        assert_eq!(find(&points, "Chouette.host.cpu.percentage")[0].value, 25.0);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn groups_are_configurable_and_checked() {
        let mut vars = PluginVars::new();
        vars.insert("HOST_COLLECTOR_METRICS".into(), r#"["RAM"]"#.into());
        vars.insert("CHOUETTE_PROC_ROOT".into(), fake_root().display().to_string());
        let mut host = Host::from_vars(&vars).expect("valid");
        let names: Vec<_> = host.collect(0.0).expect("ok").into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["Chouette.host.memory.used", "Chouette.host.memory.available"]);
        vars.insert("HOST_COLLECTOR_METRICS".into(), r#"["disk"]"#.into());
        let err = Host::from_vars(&vars).err().expect("refused").to_string();
        assert!(err.contains("HOST_COLLECTOR_METRICS") && err.contains("disk"), "{err}");
    }

    #[test]
    fn a_missing_root_is_an_error_naming_the_file() {
        let mut host = Host::new(PathBuf::from("/nonexistent-chouette"), vec!["la".into()], fixture_statfs);
        let err = host.collect(0.0).expect_err("error").to_string();
        assert!(err.contains("/nonexistent-chouette/proc/loadavg"), "{err}");
    }

    #[test]
    fn real_statvfs_of_root() {
        let usage = statvfs(Path::new("/")).expect("statvfs /");
        assert!(usage.used_bytes() > 0);
    }
}
