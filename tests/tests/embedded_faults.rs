//! The embedded store's file faults: a corrupt file (truncated, garbage, wrong magic number, a
//! damaged header) is moved aside and a fresh store created, at the store level and through the
//! real binary; a file locked by another process is not corrupt. A full disk through the real
//! binary (the agent keeps turning, logs one ERROR, resumes once space is back). The store-level
//! full-disk test is `embedded_full_disk.rs` (it lowers a process-wide limit).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chouette_agent::store::embedded::EmbeddedStore;
use chouette_agent::store::{NewRecord, Queue, Store};
use chouette_tests::agent_binary;
use chouette_tests::{wait_until, TempDir, VictoriaMetrics};

fn batch(first: usize, n: usize) -> Vec<NewRecord> {
    (first..first + n)
        .map(|i| NewRecord { id: format!("id-{i:07}").into_bytes(), score: i as f64, value: vec![b'x'; 200] })
        .collect()
}

/// The bytes of a valid store file holding 1,000 raw records (3.7 MB).
fn valid_store_bytes(dir: &Path) -> Vec<u8> {
    let path = dir.join("valid.redb");
    let mut store = EmbeddedStore::open(&path).expect("open");
    for chunk in 0..10 {
        store.add(Queue::RawMetrics, &batch(chunk * 100, 100)).expect("add");
    }
    drop(store);
    let bytes = std::fs::read(&path).expect("read store file");
    std::fs::remove_file(&path).expect("remove");
    bytes
}

/// The ways a store file is damaged, each with its bytes.
fn corruptions(valid: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut wrong_magic = valid.to_vec();
    wrong_magic[0] = b'R';
    let mut page_size = valid.to_vec();
    page_size[13] ^= 0x55; // the header's page size (bytes 12..16)
    let mut no_regions = valid.to_vec();
    no_regions[20..32].fill(0); // data pages per region, full regions, trailing pages
                                // Recovery required (as after a crash) and both commit slots damaged: the repair fails.
    let mut slots = valid.to_vec();
    slots[9] |= 2; // the god byte's "recovery required" bit
    slots[64 + 20] ^= 0xff; // commit slot 0 (bytes 64..192): its checksum no longer matches
    slots[192 + 20] ^= 0xff; // commit slot 1 (bytes 192..320)
    vec![
        ("repair fails", slots),
        ("truncated to half", valid[..valid.len() / 2].to_vec()),
        ("truncated by one page", valid[..valid.len() - 4096].to_vec()),
        ("truncated to one page", valid[..4096].to_vec()),
        ("shorter than a header", valid[..100].to_vec()),
        ("garbage", vec![0x5a; valid.len()]),
        ("wrong magic number", wrong_magic),
        ("wrong page size", page_size),
        ("no regions", no_regions),
    ]
}

/// The files in `dir` named `<file>.corrupt-*`.
fn moved_aside(dir: &Path, file: &str) -> Vec<PathBuf> {
    let prefix = format!("{file}.corrupt-");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)))
        .collect();
    found.sort();
    found
}

#[test]
fn a_corrupt_store_file_is_moved_aside_and_a_fresh_store_created() {
    let tmp = TempDir::new("corrupt");
    let valid = valid_store_bytes(&tmp.0);
    for (what, bytes) in corruptions(&valid) {
        let dir = tmp.0.join(what.replace(' ', "-"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("chouette.redb");
        std::fs::write(&path, &bytes).expect("write corrupt file");

        let mut store = EmbeddedStore::open(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(store.len(Queue::RawMetrics).expect("len"), 0, "{what}: a fresh store");
        store.add(Queue::RawMetrics, &batch(0, 3)).expect("add to the fresh store");
        drop(store);
        let aside = moved_aside(&dir, "chouette.redb");
        assert_eq!(aside.len(), 1, "{what}: one file moved aside: {aside:?}");
        assert!(std::fs::read(&aside[0]).expect("read aside") == bytes, "{what}: kept as it was");
        // The fresh store is a good one: it opens again as it is, with its records.
        let mut store = EmbeddedStore::open(&path).expect("reopen the fresh store");
        assert_eq!(store.len(Queue::RawMetrics).expect("len"), 3, "{what}");
        assert_eq!(moved_aside(&dir, "chouette.redb").len(), 1, "{what}: nothing more moved");
    }
}

#[test]
fn a_valid_or_empty_store_file_is_opened_as_it_is() {
    let tmp = TempDir::new("valid");
    let path = tmp.0.join("chouette.redb");
    std::fs::write(&path, valid_store_bytes(&tmp.0)).expect("write");
    let mut store = EmbeddedStore::open(&path).expect("open");
    assert_eq!(store.len(Queue::RawMetrics).expect("len"), 1000);
    drop(store);
    let empty = tmp.0.join("empty.redb");
    std::fs::write(&empty, b"").expect("write");
    let mut store = EmbeddedStore::open(&empty).expect("open an empty file");
    assert_eq!(store.len(Queue::RawMetrics).expect("len"), 0);
    assert!(moved_aside(&tmp.0, "chouette.redb").is_empty() && moved_aside(&tmp.0, "empty.redb").is_empty());
}

#[test]
fn a_store_file_held_by_another_process_is_not_corrupt() {
    let tmp = TempDir::new("locked");
    let path = tmp.0.join("chouette.redb");
    let mut first = EmbeddedStore::open(&path).expect("open");
    first.add(Queue::RawMetrics, &batch(0, 5)).expect("add");
    // A second open (another agent, `chouette status`) fails: the file is not touched.
    let error = EmbeddedStore::open(&path).expect_err("the file is locked");
    assert!(error.to_string().contains("Database already open"), "{error}");
    assert!(moved_aside(&tmp.0, "chouette.redb").is_empty());
    assert_eq!(first.len(Queue::RawMetrics).expect("len"), 5, "the holder still works");
}

/// The agent binary with its stdout read through a pipe (a pipe is not subject to the file-size
/// limit the full-disk test sets), SIGXFSZ ignored (as with `trap '' XFSZ`, kept across exec),
/// so a write past the limit fails with EFBIG, as one on a full disk fails with ENOSPC.
struct Agent {
    child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

/// The agent binary run by `sh` with SIGXFSZ ignored, after the shell commands `before` (a
/// `ulimit -f`, say), with a clean environment plus `vars`.
fn agent_command(before: &str, vars: &[(&str, String)]) -> Command {
    let mut command = Command::new("sh");
    command
        .args(["-c", &format!("trap '' XFSZ; {before} exec \"$0\""), agent_binary!()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // No DogStatsD UDP socket (8125 by default), as the harness's agents.
        .env("DOGSTATSD_PORT", "0");
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

impl Agent {
    fn start(vars: &[(&str, String)]) -> Agent {
        let mut child = agent_command("", vars)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start chouette");
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = std::sync::Arc::clone(&output);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut out = sink.lock().unwrap_or_else(|e| e.into_inner());
                out.push_str(&line);
                out.push('\n');
            }
        });
        Agent { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fails the test, with the log, if the agent has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("the agent exited ({status}):\n{}", self.output());
        }
    }

    fn wait_for(&mut self, what: &str, within: Duration, done: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + within;
        loop {
            self.assert_running();
            if done(&self.output()) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn set_file_size_limit(&self, bytes: Option<u64>) {
        use rustix::process::{prlimit, Pid, Resource, Rlimit};
        let pid = Pid::from_child(&self.child);
        let hard = prlimit(Some(pid), Resource::Fsize, Rlimit { current: None, maximum: None })
            .map(|old| old.maximum)
            .expect("read the agent's RLIMIT_FSIZE");
        prlimit(Some(pid), Resource::Fsize, Rlimit { current: bytes, maximum: hard })
            .expect("set the agent's RLIMIT_FSIZE");
    }

    /// SIGTERM, then the exit status (within 20 s).
    fn stop(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(sent.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "the agent did not stop within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent's log lines at level ERROR.
fn error_lines(output: &str) -> Vec<&str> {
    output.lines().filter(|l| l.contains(r#""levelname": "ERROR""#)).collect()
}

fn embedded_vars(state: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("CHOUETTE_STORAGE_TYPE", "embedded".into()),
        ("CHOUETTE_STATE_DIR", state.display().to_string()),
        ("AGGREGATE_INTERVAL", "1".into()),
        ("RELEASE_INTERVAL", "1".into()),
        ("LOG_LEVEL", "DEBUG".into()),
    ]
}

#[test]
fn the_agent_starts_on_a_corrupt_store_file_logs_one_error_and_keeps_running() {
    let tmp = TempDir::new("corrupt-agent");
    let valid = valid_store_bytes(&tmp.0);
    // A truncated file (redb panics on it: a SIGABRT restart loop in the release build), one that
    // is not a redb file at all, and a valid one on which redb panicked in the last run (the
    // panic hook left its marker; see embedded_panic.rs for the hook itself).
    let cases = [
        ("truncated", valid[..valid.len() / 2].to_vec(), false),
        ("garbage", vec![0x5a; 100_000], false),
        ("redb panicked", valid.clone(), true),
    ];
    for (what, bytes, panicked) in cases {
        let state = tmp.0.join(what.replace(' ', "-"));
        std::fs::create_dir_all(&state).expect("mkdir");
        let path = state.join("chouette.redb");
        std::fs::write(&path, &bytes).expect("write corrupt file");
        let marker = chouette_agent::store::embedded::panic_marker_path(&path);
        if panicked {
            let panic =
                "panicked at .../redb-2.6.4/src/tuple_types.rs:278:1:\nrange end index 35 out of range";
            std::fs::write(&marker, panic).expect("write marker");
        }

        let mut agent = Agent::start(&embedded_vars(&state));
        agent.wait_for("the store in use", Duration::from_secs(20), |out| out.contains("store in use"));
        // The loop turns with the fresh store: a release tick writes the status snapshot.
        let snapshot = state.join("chouette.status");
        wait_until("a status snapshot", Duration::from_secs(20), || snapshot.exists());
        agent.assert_running();

        let out = agent.output();
        let aside = moved_aside(&state, "chouette.redb");
        assert_eq!(aside.len(), 1, "{what}: {aside:?}");
        assert!(std::fs::read(&aside[0]).expect("read aside") == bytes, "{what}: kept as it was");
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{what}: one ERROR:\n{out}");
        let moved_to = format!("moved_to={}", aside[0].display());
        assert!(
            errors[0].contains(&format!("path={}", path.display())),
            "{what}: names the file: {}",
            errors[0]
        );
        assert!(errors[0].contains(&moved_to), "{what}: names where it went: {}", errors[0]);
        assert!(errors[0].contains("kept there for inspection"), "{}", errors[0]);
        if panicked {
            assert!(errors[0].contains("redb panicked on this file"), "{}", errors[0]);
            assert!(!marker.exists(), "the marker goes with the move");
        }
        assert!(agent.stop().success(), "{what}: exits 0 on SIGTERM");

        // The next start opens the fresh store as it is: no second move, no ERROR.
        let mut again = Agent::start(&embedded_vars(&state));
        again.wait_for("the store in use", Duration::from_secs(20), |out| out.contains("store in use"));
        assert!(error_lines(&again.output()).is_empty(), "{}", again.output());
        assert_eq!(moved_aside(&state, "chouette.redb").len(), 1);
        assert!(again.stop().success());
    }
}

#[test]
fn the_agent_exits_1_when_it_cannot_create_a_fresh_store() {
    // The state directory is a file: no store can be created there (as on a full or read-only
    // disk). A clear error and exit 1 (systemd retries later), nothing moved.
    let tmp = TempDir::new("no-store");
    let state = tmp.0.join("state");
    std::fs::write(&state, b"not a directory").expect("write");
    let output = Command::new(agent_binary!())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOGSTATSD_PORT", "0")
        .envs(embedded_vars(&state))
        .output()
        .expect("run chouette");
    let printed =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(printed.contains("cannot open the store"), "{printed}");
    assert!(printed.contains(&state.display().to_string()), "names the path: {printed}");
}

#[test]
fn a_full_disk_at_startup_is_exit_1_and_a_corrupt_file_stays_aside_for_the_next_start() {
    let tmp = TempDir::new("full-at-start");
    let path = tmp.0.join("chouette.redb");
    std::fs::write(&path, vec![0x5a; 8192]).expect("write a corrupt file");
    // The disk is full: no file may grow past 4 KiB (`ulimit -f 8`: 512-byte blocks in dash,
    // 1 KiB in bash); a fresh store needs about 1 MiB.
    let output = agent_command("ulimit -f 8;", &embedded_vars(&tmp.0)).output().expect("run chouette");
    let printed =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("cannot create a fresh store") && printed.contains("File too large"),
        "{printed}"
    );
    let aside = moved_aside(&tmp.0, "chouette.redb");
    assert_eq!(aside.len(), 1, "moved aside before the fresh store failed: {printed}");

    // Space is back (systemd restarts it): a fresh store, no second move, no ERROR.
    let mut agent = Agent::start(&embedded_vars(&tmp.0));
    agent.wait_for("the store in use", Duration::from_secs(20), |out| out.contains("store in use"));
    assert!(error_lines(&agent.output()).is_empty(), "{}", agent.output());
    assert_eq!(moved_aside(&tmp.0, "chouette.redb"), aside);
    assert!(agent.stop().success());
}

#[test]
fn the_agent_rides_out_a_full_disk_with_one_error_and_resumes_once_space_is_back() {
    let vm = VictoriaMetrics::start();
    let tmp = TempDir::new("full-disk-agent");
    let mut vars = embedded_vars(&tmp.0);
    vars.extend([
        ("DATADOG_URL", vm.datadog_url()),
        ("COLLECTOR_PLUGINS", r#"["host"]"#.to_string()),
        ("CAPTURE_INTERVAL", "1".to_string()),
    ]);
    let mut agent = Agent::start(&vars);
    agent.wait_for("the store in use", Duration::from_secs(20), |out| out.contains("store in use"));
    let delivered = || vm.series(r#"{__name__=~"chouette.*"}"#).values().flatten().map(|(t, _)| *t).max();
    wait_until("self-metrics at VictoriaMetrics", Duration::from_secs(30), || delivered().is_some());

    // Full: no write past the first page of the file succeeds.
    agent.set_file_size_limit(Some(4096));
    agent.wait_for("the I/O error", Duration::from_secs(20), |out| out.contains("File too large"));
    // Several ticks while full: the store tries to reopen the file (DEBUG), the log stays quiet.
    let tries = |out: &str| out.lines().filter(|l| l.contains("cannot reopen the store yet")).count();
    agent.wait_for("three tries to reopen", Duration::from_secs(30), |out| tries(out) >= 3);
    let out = agent.output();
    assert_eq!(error_lines(&out).len(), 1, "one ERROR for the whole outage:\n{out}");
    assert!(!out.contains("store reachable again"), "{out}");

    // Space is back: the agent resumes by itself and delivers what it captured since.
    let freed_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock");
    agent.set_file_size_limit(None);
    agent.wait_for("the store to resume", Duration::from_secs(30), |out| {
        out.contains("store reachable again")
    });
    wait_until("metrics captured after the outage", Duration::from_secs(30), || {
        delivered().is_some_and(|t| t > freed_at_ms)
    });
    let out = agent.output();
    assert_eq!(error_lines(&out).len(), 1, "{out}");
    assert!(agent.stop().success());
}
