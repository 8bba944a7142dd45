//! `tegrastats` (NVIDIA Jetson, compat §6.2): ONE long-lived `tegrastats` child whose stdout
//! lines are read by a supervisor thread; each capture takes the latest line.
//!
//! - The child is started as `TEGRASTATS_PATH TEGRASTATS_ARGS...` ([`Settings`]); a tool that
//!   ignores the arguments works too.
//! - If it exits it is reaped and restarted with a backoff (0.5 s doubling to 30 s, reset after a
//!   child that ran 10 s).
//! - Dropping the collector kills the child and waits for it (no zombie, compat §7 item 28).
//!
//! | `TEGRASTATS_METRICS` | metrics | tags | unit |
//! |---|---|---|---|
//! | `ram` | `Chouette.tegrastats.ram.used`, `Chouette.tegrastats.ram.free` (total − used; a 0 is not sent, as the original) | | bytes |
//! | `temp` | `Chouette.tegrastats.temperature` (not `PMIC`, any case; absent `-256` sensors skipped) | `zone:` as written | °C |
//! | `nvidia` (alias `datadog`; not in the default) | Datadog's Jetson check set, `nvidia.jetson.*`: `mem.*`, `swap.*`, `iram.*`, `cpu.usage`/`cpu.freq`, `cpu.inactive_count`/`total_count`, `emc.*`, `gpu.*`, `temp` (`PMIC` included), `power.instant`/`power.average` | `cpu:N`, `gpc:N`, `zone:`, `probe:` | Datadog's (bytes, %, MHz, °C, mW) |
//!
//! Every line is parsed by `chouette_boards::tegrastats::parse_line` (every JetPack format); the metric
//! sets are the boards crate's `chouette_ram_metrics`, `chouette_temperature_metrics` and
//! `datadog_metrics`, sent as gauges.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chouette_boards::tegrastats::{self as boards, Metric, TagValue};

use super::{CollectError, Collector, PluginConfigError, PluginVars, Point};
use crate::config::vars;

/// The groups `TEGRASTATS_METRICS` may name (`datadog` is an alias of `nvidia`).
pub const GROUPS: [&str; 4] = ["ram", "temp", "nvidia", "datadog"];

/// A line older than this is stale: the capture fails rather than repeat old values.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// How long a capture waits for the first line of a freshly started child.
pub const FIRST_LINE_WAIT: Duration = Duration::from_secs(3);

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const HEALTHY_RUN: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Shared {
    latest: Option<(String, Instant)>,
    last_error: Option<String>,
    /// The running child's pid, if any.
    pid: Option<u32>,
    /// How many children were started.
    starts: u64,
}

struct State {
    shared: Mutex<Shared>,
    fresh: Condvar,
    child: Mutex<Option<Child>>,
    stop: AtomicBool,
}

/// The `tegrastats` collector's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `TEGRASTATS_PATH`.
    pub path: String,
    /// `TEGRASTATS_ARGS`.
    pub args: Vec<String>,
    /// `TEGRASTATS_METRICS`, among [`GROUPS`], `datadog` read as `nvidia`, each once.
    pub groups: Vec<String>,
}

impl Settings {
    /// From the plugin variables, through their table entries.
    pub fn from_vars(vars: &PluginVars) -> Result<Settings, PluginConfigError> {
        let mut groups: Vec<String> = Vec::new();
        for group in vars::TEGRASTATS_METRICS.list(vars)? {
            // `datadog` is `nvidia`; a group named twice is emitted once.
            let group = if group == "datadog" { "nvidia".to_owned() } else { group };
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
        Ok(Settings {
            path: vars::TEGRASTATS_PATH.string(vars)?,
            args: vars::TEGRASTATS_ARGS.list(vars)?,
            groups,
        })
    }
}

/// The `tegrastats` collector; see the module docs.
pub struct Tegrastats {
    groups: Vec<String>,
    state: Arc<State>,
    supervisor: Option<JoinHandle<()>>,
}

impl Tegrastats {
    /// From its [`Settings`]; starts the child.
    pub fn from_vars(vars: &PluginVars) -> Result<Tegrastats, PluginConfigError> {
        let settings = Settings::from_vars(vars)?;
        Ok(Tegrastats::spawn(settings.path, settings.args, settings.groups))
    }

    /// Starts the supervisor running `path args...`.
    pub fn spawn(path: String, args: Vec<String>, groups: Vec<String>) -> Tegrastats {
        let state = Arc::new(State {
            shared: Mutex::new(Shared::default()),
            fresh: Condvar::new(),
            child: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let supervisor_state = Arc::clone(&state);
        let supervisor = std::thread::Builder::new()
            .name("tegrastats".into())
            .spawn(move || supervise(&supervisor_state, &path, &args))
            .map_err(|e| log::error!("plugin=tegrastats: cannot start its reader thread: {e}"))
            .ok();
        Tegrastats { groups, state, supervisor }
    }

    /// The running child's pid (tests).
    pub fn child_pid(&self) -> Option<u32> {
        lock(&self.state.shared).pid
    }

    /// How many times the child was started (tests).
    pub fn starts(&self) -> u64 {
        lock(&self.state.shared).starts
    }

    /// Parses one line into points (gauges), per the configured groups. A line the parser does not
    /// recognise gives no point (logged).
    pub fn points(&self, line: &str) -> Vec<Point> {
        let stats = match boards::parse_line(line) {
            Ok(stats) => stats,
            Err(e) => {
                log::warn!("plugin=tegrastats: unparsable line ({e}): {line:?}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        let mut emit = |m: Metric<'_>| out.push(point(&m));
        for group in &self.groups {
            match group.as_str() {
                "ram" => stats.chouette_ram_metrics(&mut emit),
                "temp" => stats.chouette_temperature_metrics(&mut emit),
                "nvidia" | "datadog" => stats.datadog_metrics(&mut emit),
                _ => {}
            }
        }
        out
    }
}

/// A boards metric as a point: same name, value and (single) tag.
fn point(m: &Metric<'_>) -> Point {
    let p = Point::new(m.name, m.value);
    match m.tag {
        Some(tag) => match tag.value {
            TagValue::Str(s) => p.tag(tag.key, s),
            TagValue::Index(i) => p.tag(tag.key, i.to_string()),
        },
        None => p,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn supervise(state: &State, path: &str, args: &[String]) {
    let mut backoff = BACKOFF_START;
    while !state.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let spawned = Command::new(path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(mut child) => {
                let stdout = child.stdout.take();
                {
                    let mut shared = lock(&state.shared);
                    shared.pid = Some(child.id());
                    shared.starts += 1;
                }
                *lock(&state.child) = Some(child);
                if state.stop.load(Ordering::Relaxed) {
                    // Drop raced with the start: make sure this child dies too.
                    if let Some(child) = lock(&state.child).as_mut() {
                        let _ = child.kill();
                    }
                }
                if let Some(stdout) = stdout {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if line.trim().is_empty() {
                            continue;
                        }
                        lock(&state.shared).latest = Some((line, Instant::now()));
                        state.fresh.notify_all();
                    }
                }
                // EOF: the child exited or was killed; reap it.
                let status = lock(&state.child).take().map(|mut c| {
                    let _ = c.kill();
                    c.wait()
                });
                let mut shared = lock(&state.shared);
                shared.pid = None;
                if !state.stop.load(Ordering::Relaxed) {
                    let why = format!("{path} exited ({status:?})");
                    log::warn!("plugin=tegrastats: {why}; restarting in {backoff:?}");
                    shared.last_error = Some(why);
                }
            }
            Err(e) => {
                let why = format!("cannot start {path}: {e}");
                log::warn!("plugin=tegrastats: {why}; retrying in {backoff:?}");
                lock(&state.shared).last_error = Some(why);
            }
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = BACKOFF_START;
        }
        let until = Instant::now() + backoff;
        while !state.stop.load(Ordering::Relaxed) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

impl Collector for Tegrastats {
    fn name(&self) -> &str {
        "tegrastats"
    }

    fn collect(&mut self, _now: f64) -> Result<Vec<Point>, CollectError> {
        let deadline = Instant::now() + FIRST_LINE_WAIT;
        let mut shared = lock(&self.state.shared);
        while shared.latest.is_none() && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            shared = self
                .state
                .fresh
                .wait_timeout(shared, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        match &shared.latest {
            Some((line, at)) if at.elapsed() <= STALE_AFTER => {
                let line = line.clone();
                drop(shared);
                Ok(self.points(&line))
            }
            Some((_, at)) => Err(CollectError::Unavailable(format!(
                "the latest tegrastats line is {:.0?} old ({})",
                at.elapsed(),
                shared.last_error.as_deref().unwrap_or("the tool prints too rarely")
            ))),
            None => Err(CollectError::Unavailable(format!(
                "no tegrastats line yet ({})",
                shared.last_error.as_deref().unwrap_or("still starting")
            ))),
        }
    }
}

impl Drop for Tegrastats {
    /// Kills the child, then joins the supervisor, which reaps it.
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(child) = lock(&self.state.child).as_mut() {
            let _ = child.kill();
        }
        if let Some(thread) = self.supervisor.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake tegrastats printing the fixture line every 100 ms, `count` times, then exiting.
    fn fake_tool(name: &str, count: u32) -> String {
        let dir = std::env::temp_dir().join(format!("chouette-tegra-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let line = concat!(env!("CARGO_MANIFEST_DIR"), "/../boards/tests/data/tegrastats_line.txt");
        let script = dir.join("tegrastats");
        let body = format!(
            "#!/bin/sh\n# ignores its arguments, as an older tegrastats would\ni=0\nwhile [ $i -lt {count} ]; do cat {line}; echo; sleep 0.1; i=$((i+1)); done\n"
        );
        std::fs::write(&script, body).expect("script");
        let _ = Command::new("chmod").arg("+x").arg(&script).status();
        script.display().to_string()
    }

    fn groups() -> Vec<String> {
        vec!["ram".into(), "temp".into()]
    }

    fn alive(pid: u32) -> bool {
        // A zombie still has a /proc entry (state Z): gone means reaped.
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn values_of_the_fixture_line() {
        let mut t =
            Tegrastats::spawn(fake_tool("values", 1000), vec!["--interval".into(), "100".into()], groups());
        let points = t.collect(0.0).expect("a line");
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../boards/tests/data/tegrastats_line.expected.json"
            ))
            .expect("fixture"),
        )
        .expect("json");
        let text = expected.to_string();
        assert!(text.contains("6570377216"), "{text}");
        assert_eq!(points[0], Point::new("Chouette.tegrastats.ram.used", 6570377216.0));
        assert_eq!(points[1], Point::new("Chouette.tegrastats.ram.free", 1671430144.0));
        let zones: Vec<_> = points[2..].iter().map(|p| (p.tags[0].1.as_str(), p.value)).collect();
        assert_eq!(
            zones,
            [
                ("PLL", 52.0),
                ("MCPU", 52.0),
                ("Tboard", 50.0),
                ("GPU", 51.5),
                ("BCPU", 52.0),
                ("thermal", 51.8),
                ("Tdiode", 50.0)
            ]
        );
        let pid = t.child_pid().expect("running");
        assert!(alive(pid));
        drop(t);
        assert!(!alive(pid), "the child was killed and reaped");
    }

    #[test]
    fn restarts_after_exit_and_leaves_no_zombie() {
        // Prints two lines then exits: the supervisor reaps and restarts it.
        let mut t = Tegrastats::spawn(fake_tool("restart", 2), Vec::new(), groups());
        assert!(t.collect(0.0).is_ok());
        let first = t.child_pid();
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.starts() < 2 {
            assert!(Instant::now() < deadline, "not restarted");
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(pid) = first {
            assert!(!alive(pid), "the exited child was reaped");
        }
        assert!(t.collect(1.0).is_ok());
        let last = t.child_pid();
        drop(t);
        if let Some(pid) = last {
            assert!(!alive(pid));
        }
    }

    #[test]
    fn a_missing_binary_is_an_error_not_a_hang() {
        let mut t = Tegrastats::spawn("/nonexistent/tegrastats".into(), Vec::new(), groups());
        let err = t.collect(0.0).expect_err("error").to_string();
        assert!(err.contains("/nonexistent/tegrastats"), "{err}");
    }

    #[test]
    fn metrics_are_checked() {
        let mut vars = PluginVars::new();
        vars.insert("TEGRASTATS_METRICS".into(), r#"["gpu"]"#.into());
        let err = Tegrastats::from_vars(&vars).err().expect("refused").to_string();
        assert!(err.contains("TEGRASTATS_METRICS"), "{err}");
        vars.insert("TEGRASTATS_PATH".into(), "/nonexistent/tegrastats".into());
        vars.insert("TEGRASTATS_METRICS".into(), r#"["nvidia","ram","datadog"]"#.into());
        let t = Tegrastats::from_vars(&vars).expect("nvidia and its alias datadog are accepted");
        assert_eq!(t.groups, ["nvidia", "ram"]);
    }

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../boards/tests/data/");

    /// A collector whose child never starts: only [`Tegrastats::points`] is used.
    fn parser_only(groups: &[&str]) -> Tegrastats {
        let groups = groups.iter().map(|g| (*g).to_owned()).collect();
        Tegrastats::spawn("/nonexistent/tegrastats".into(), Vec::new(), groups)
    }

    fn tags(p: &Point) -> Vec<String> {
        p.tags.iter().map(|(k, v)| format!("{k}:{v}")).collect()
    }

    #[test]
    fn nvidia_group_is_datadogs_jetson_set() {
        let line = std::fs::read_to_string(format!("{FIXTURES}01-nano-jp4-root.txt")).expect("fixture");
        let points = parser_only(&["nvidia"]).points(&line);
        // The same count as chouette-boards' own test of this line (tests/tegrastats_fixtures.rs).
        assert_eq!(points.len(), 36);
        assert!(points.iter().all(|p| p.name.starts_with("nvidia.jetson.")));
        let has = |name: &str, tag: &[&str], value: f64| {
            points.iter().any(|p| p.name == name && tags(p) == tag && p.value == value)
        };
        assert!(has("nvidia.jetson.mem.used", &[], 534.0 * 1048576.0));
        assert!(has("nvidia.jetson.mem.total", &[], 3964.0 * 1048576.0));
        assert!(has("nvidia.jetson.mem.n_lfb", &[], 98.0));
        assert!(has("nvidia.jetson.iram.lfb", &[], 252.0 * 1024.0));
        assert!(has("nvidia.jetson.cpu.usage", &["cpu:0"], 16.0));
        assert!(has("nvidia.jetson.cpu.freq", &["cpu:3"], 204.0));
        assert!(has("nvidia.jetson.gpu.freq", &[], 76.0));
        assert!(has("nvidia.jetson.temp", &["zone:PMIC"], 100.0));
        assert!(has("nvidia.jetson.temp", &["zone:thermal"], 36.25));
        assert!(has("nvidia.jetson.power.average", &["probe:POM_5V_IN"], 1022.0));

        // With the original's groups too: theirs first, in the configured order, PMIC only in nvidia's.
        let points = parser_only(&["ram", "temp", "nvidia"]).points(&line);
        assert_eq!(points.len(), 2 + 5 + 36);
        assert_eq!(points[0], Point::new("Chouette.tegrastats.ram.used", 534.0 * 1048576.0));
        assert!(!points[..7].iter().any(|p| tags(p) == ["zone:PMIC"]));
        assert!(points[7..].iter().all(|p| p.name.starts_with("nvidia.jetson.")));
    }

    #[test]
    fn every_fixture_has_ram_and_temperatures() {
        let t = parser_only(&["ram", "temp"]);
        // The numbered board captures (the folder holds other boards' fixtures too).
        let captures = std::fs::read_dir(FIXTURES).expect("dir").flatten().filter(|entry| {
            entry.file_name().to_str().is_some_and(|name| name.starts_with(|c: char| c.is_ascii_digit()))
        });
        let mut seen = 0;
        for entry in captures {
            seen += 1;
            let text = std::fs::read_to_string(entry.path()).expect("fixture");
            for line in text.lines().filter(|l| l.contains("RAM ")) {
                let points = t.points(line);
                assert!(points.iter().any(|p| p.name == "Chouette.tegrastats.ram.used"), "{line}");
                let temps: Vec<_> =
                    points.iter().filter(|p| p.name == "Chouette.tegrastats.temperature").collect();
                assert!(!temps.is_empty(), "{line}");
                assert!(temps.iter().all(|p| !p.tags[0].1.eq_ignore_ascii_case("pmic")), "{line}");
                assert!(temps.iter().all(|p| p.value > -256.0), "{line}");
            }
        }
        assert_eq!(seen, 12, "the twelve numbered tegrastats captures");
        assert!(t
            .points("VRAM 6266/7860MB CPU [20%@345]")
            .iter()
            .all(|p| p.name != "Chouette.tegrastats.ram.used"));
        assert!(t.points("").is_empty());
    }
}
