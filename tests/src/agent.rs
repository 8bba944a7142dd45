//! The agent process: the `chouette-e2e` binary (the agent's own `main.rs`, built by this
//! crate, see `Cargo.toml`) started with a clean environment, its log captured, killed on drop.
//!
//! Cargo hands its path to this crate's integration tests only, as `CARGO_BIN_EXE_chouette-e2e`,
//! and rebuilds it whenever the agent changes: [`agent_binary!`](crate::agent_binary) reads it, so
//! a suite that is not one of ours does not compile rather than run a stale binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{free_port, wait_until};

/// The path of the agent binary built for this run (`CARGO_BIN_EXE_chouette-e2e`), as a
/// `&'static str`. Only `chouette-tests`' own integration tests (`tests/tests/*.rs`) have it.
#[macro_export]
macro_rules! agent_binary {
    () => {
        env!("CARGO_BIN_EXE_chouette-e2e")
    };
}

/// The agent binary ([`agent_binary!`](crate::agent_binary)), started with a clean environment (only `PATH`) plus
/// the given variables, its stdout in a temporary log file. Killed on drop. `DOGSTATSD_PORT` is
/// `0` (the DogStatsD listener's UDP socket off) unless the variables set it.
pub struct Agent {
    child: std::process::Child,
    log: PathBuf,
    binary: PathBuf,
    vars: Vec<(String, String)>,
}

impl Agent {
    /// Starts `binary` (pass [`agent_binary!()`](crate::agent_binary)) with `PATH` and `vars`.
    pub fn start(binary: impl AsRef<Path>, vars: &[(&str, String)]) -> Agent {
        let log =
            std::env::temp_dir().join(format!("chouette-agent-{}-{}.log", std::process::id(), free_port()));
        let out = std::fs::File::create(&log).expect("agent log file");
        let binary = binary.as_ref().to_path_buf();
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let child = spawn(&binary, &vars, out);
        Agent { child, log, binary, vars }
    }

    /// A kill -9, then the same binary started again with the same variables; its output goes
    /// on in the same log, so [`Agent::output`] tells the whole run.
    pub fn kill9_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let out = std::fs::OpenOptions::new().append(true).open(&self.log).expect("agent log file");
        self.child = spawn(&self.binary, &self.vars, out);
    }

    /// The process id of the running agent.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the agent printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the agent has opened its store (its signal handlers are installed by then).
    pub fn wait_ready(&self) {
        wait_until("the agent to open its store", Duration::from_secs(20), || {
            self.output().contains("store in use")
        });
    }

    /// SIGTERM once the agent is up, then its exit status (within 20 s); the log is printed
    /// when the exit is not a success.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.wait_ready();
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                if !status.success() {
                    eprintln!("agent log:\n{}", self.output());
                }
                return status;
            }
            assert!(Instant::now() < deadline, "the agent did not stop within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status if the agent has exited (by itself: a refused configuration or store).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// A kill -9.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(binary: &Path, vars: &[(String, String)], out: std::fs::File) -> std::process::Child {
    let mut command = Command::new(binary);
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    // The DogStatsD listener is on by default (UDP 8125): off unless a test asks for it, so
    // agents running side by side do not fight over one port (nor log its bind failure).
    if !vars.iter().any(|(name, _)| name == "DOGSTATSD_PORT") {
        command.env("DOGSTATSD_PORT", "0");
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    command.stdout(out).stderr(Stdio::inherit()).spawn().expect("start chouette")
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
