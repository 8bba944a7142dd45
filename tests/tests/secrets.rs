//! No byte of a URL's password in anything the real binary prints: every URL-shaped variable
//! (REDIS_URL, DATADOG_URL, DATADOG_LOGS_URL, DRAMATIQ_REDIS_URL, and REDIS_HOST, which users
//! fill with URLs) set to passwords with `/ ? # @ :` pasted unencoded (invalid URLs) and
//! percent-encoded (valid ones, against a real Redis that requires the password): startup
//! errors, the refusal to dry-run a Redis, a store that cannot be opened, a running agent's log
//! lines (failed sends, a failing collector), a dry run's output, `chouette status`, `--help`.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chouette_tests::agent_binary;
use chouette_tests::{free_port, RedisServer, VictoriaMetrics};
use redis::Commands;

/// Passwords as users paste them. Each is made of distinctive 4-character fragments separated
/// by the characters that end a URL's authority, so that a partial leak (what follows a `/`,
/// say) is caught too.
const PASSWORDS: [&str; 3] = ["Lg7x/Hq4w?Rz2v#Wm8u@Kd6t:Np3s", "Tj5e@Yf3r@Qa9z", "Vo8i#Ux4c:/Ie6b?"];

/// What must appear nowhere: the password, raw and percent-encoded, and each of its fragments.
fn forbidden(password: &str) -> Vec<String> {
    let mut out = vec![password.to_owned(), encode(password)];
    out.extend(password.split(['/', '?', '#', '@', ':']).filter(|f| !f.is_empty()).map(str::to_owned));
    out
}

fn assert_hidden(password: &str, what: &str, text: &str) {
    for piece in forbidden(password) {
        assert!(!text.contains(&piece), "{what}: {piece:?} of the password is shown in:\n{text}");
    }
}

/// Percent-encodes every byte but ASCII letters and digits.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Environment variables for one run.
type Vars = Vec<(&'static str, String)>;

fn chouette() -> Command {
    let mut command = Command::new(agent_binary!());
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    // No DogStatsD UDP socket (8125 by default), as the harness's agents.
    command.env("DOGSTATSD_PORT", "0");
    command
}

/// Runs the binary to its exit (within 30 s) with `vars`.
fn run(args: &[&str], vars: &[(&str, String)]) -> (Option<i32>, String) {
    let mut command = chouette();
    command.args(args).stdin(Stdio::null());
    for (name, value) in vars {
        command.env(name, value);
    }
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start chouette");
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !waiter.is_finished() {
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("chouette {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out: Output = waiter.join().expect("waiter").expect("output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// A running agent, its stdout and stderr in files.
struct Running {
    child: Child,
    dir: PathBuf,
}

impl Running {
    fn start(vars: &[(&str, String)]) -> Running {
        let dir =
            std::env::temp_dir().join(format!("chouette-secrets-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let mut command = chouette();
        for (name, value) in vars {
            command.env(name, value);
        }
        let out = std::fs::File::create(dir.join("out")).expect("out file");
        let err = std::fs::File::create(dir.join("err")).expect("err file");
        let child = command.stdin(Stdio::null()).stdout(out).stderr(err).spawn().expect("start chouette");
        Running { child, dir }
    }

    /// Waits (up to 40 s) until the output satisfies `done`; fails showing it otherwise.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(40);
        while !done(&self.output()) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; output:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn output(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("out"), read("err"))
    }

    /// SIGTERM, then everything printed; the exit must be 0.
    fn stop(mut self) -> String {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = self.output();
        assert!(status.success(), "exit {status} after SIGTERM:\n{output}");
        output
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

#[test]
fn startup_errors_never_show_a_url_password() {
    let closed = closed_port();
    for pw in PASSWORDS {
        let enc = encode(pw);
        let cases: Vec<(&str, Vars, i32)> = vec![
            // Not a URL the variable accepts: a configuration error naming the variable.
            ("REDIS_URL, wrong scheme", vec![("REDIS_URL", format!("http://u:{pw}@cache:6379/0"))], 2),
            ("REDIS_URL, no scheme", vec![("REDIS_URL", format!("u:{pw}@cache:6379"))], 2),
            ("REDIS_HOST with credentials", vec![("REDIS_HOST", format!("u:{pw}@cache"))], 2),
            ("DATADOG_URL, wrong scheme", vec![("DATADOG_URL", format!("ftp://u:{pw}@intake/api"))], 2),
            ("DATADOG_URL, no scheme", vec![("DATADOG_URL", format!("u:{pw}@intake/api"))], 2),
            ("DATADOG_LOGS_URL, wrong scheme", vec![("DATADOG_LOGS_URL", format!("ftp://u:{pw}@logs"))], 2),
            ("DATADOG_LOGS_URL, no scheme", vec![("DATADOG_LOGS_URL", format!("//u:{pw}@logs"))], 2),
            // A Redis and no output: refused, naming the store.
            (
                "a Redis without output",
                vec![("REDIS_URL", format!("redis://u:{enc}@127.0.0.1:{closed}/0"))],
                2,
            ),
            // Redis URLs that pass the agent's check but not the Redis client's (unencoded), or a
            // Redis that is not there: the store cannot be opened.
            (
                "REDIS_URL, unencoded",
                vec![
                    ("REDIS_URL", format!("redis://u:{pw}@127.0.0.1:{closed}/0")),
                    ("DATADOG_URL", format!("http://127.0.0.1:{closed}/api")),
                ],
                1,
            ),
            (
                "REDIS_URL, encoded, nobody listening",
                vec![
                    ("REDIS_URL", format!("redis://u:{enc}@127.0.0.1:{closed}/0")),
                    ("DATADOG_URL", format!("http://127.0.0.1:{closed}/api")),
                ],
                1,
            ),
            // The dramatiq collector's own Redis, not a Redis URL: the collectors cannot start.
            (
                "DRAMATIQ_REDIS_URL, wrong scheme",
                vec![
                    ("COLLECTOR_PLUGINS", r#"["dramatiq"]"#.into()),
                    ("DRAMATIQ_REDIS_URL", format!("http://u:{pw}@broker:6379/0")),
                    ("CHOUETTE_STORAGE_TYPE", "embedded".into()),
                    (
                        "CHOUETTE_STATE_DIR",
                        std::env::temp_dir().join("chouette-secrets-dramatiq").display().to_string(),
                    ),
                    ("CHOUETTE_DRY_RUN", "true".into()),
                ],
                1,
            ),
        ];
        for (what, vars, code) in cases {
            let (got, text) = run(&["run"], &vars);
            assert_eq!(got, Some(code), "{what}:\n{text}");
            assert!(!text.trim().is_empty(), "{what}: says why");
            assert_hidden(pw, what, &text);
            if code == 2 {
                assert_eq!(text.lines().count(), 1, "{what}: one line:\n{text}");
            }
            // `chouette status` and `--help` with the same environment.
            let (_, text) = run(&["status"], &vars);
            assert_hidden(pw, &format!("{what} (status)"), &text);
            let (got, text) = run(&["--help"], &vars);
            assert_eq!(got, Some(0));
            assert_hidden(pw, &format!("{what} (--help)"), &text);
        }
    }
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A Redis that requires `password`, holding one raw metric from 3 minutes ago and one log.
fn redis_with_password(password: &str) -> (RedisServer, redis::Connection) {
    let redis = RedisServer::start();
    let mut con = redis.client();
    let ts = now() - 180.0;
    let metric = format!(
        r#"{{"metric": "leak.check", "type": "count", "value": 1, "timestamp": {ts}, "tags": {{}}}}"#
    );
    let log = r#"{"date": "2026-11-22T01:25:26.000001+00:00", "ddsource": "svc", "ddtags": [], "level": "INFO", "message": {"msg": "hello"}, "service": "svc"}"#;
    let () = redis::pipe()
        .zadd("chouette:metrics:raw.keys", "m-1", ts)
        .hset("chouette:metrics:raw.values", "m-1", metric)
        .zadd("chouette:logs:wrapped.keys", "l-1", now() - 60.0)
        .hset("chouette:logs:wrapped.values", "l-1", log)
        .query(&mut con)
        .expect("seed");
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(password)
        .query(&mut con)
        .expect("requirepass");
    (redis, con)
}

/// The running agent's variables: the store behind `password` (encoded); metrics to a real
/// VictoriaMetrics through a URL with the password (encoded: VictoriaMetrics ignores basic
/// auth); logs to a closed port through a URL with the password unencoded; the dramatiq
/// collector on a closed port.
fn running_vars(
    redis: &RedisServer,
    vm: &VictoriaMetrics,
    pw: &str,
    closed: u16,
) -> Vec<(&'static str, String)> {
    let enc = encode(pw);
    let port = redis.url().split(':').nth(2).and_then(|p| p.split('/').next()).unwrap_or_default().to_owned();
    let vm_url = vm.datadog_url().replacen("http://", &format!("http://user:{enc}@"), 1);
    vec![
        ("REDIS_URL", format!("redis://:{enc}@127.0.0.1:{port}/0")),
        ("DATADOG_URL", vm_url),
        ("DATADOG_LOGS_URL", format!("http://user:{pw}@127.0.0.1:{closed}")),
        ("COLLECTOR_PLUGINS", r#"["dramatiq"]"#.into()),
        ("DRAMATIQ_REDIS_URL", format!("redis://:{enc}@127.0.0.1:{closed}/0")),
        ("API_KEY", "k".repeat(32)),
        ("AGGREGATE_INTERVAL", "1".into()),
        ("RELEASE_INTERVAL", "1".into()),
        ("CAPTURE_INTERVAL", "1".into()),
        ("CHOUETTE_GRACE", "0".into()),
        ("CHOUETTE_REQUEST_TIMEOUT", "2".into()),
        ("LOG_LEVEL", "DEBUG".into()),
    ]
}

#[test]
fn a_running_agent_never_shows_a_url_password() {
    let pw = PASSWORDS[0];
    let (redis, mut con) = redis_with_password(pw);
    let vm = VictoriaMetrics::start();
    let vars = running_vars(&redis, &vm, pw, closed_port());
    let agent = Running::start(&vars);
    // The store opened with the password, sends to both intakes failed, the collector failed.
    agent.wait_for("failed sends and a failed capture", |out| {
        out.contains("store in use")
            && out.contains("/datadog/api/v1/series records=")
            && out.contains("/v1/input kept=1")
            && out.contains("plugin=dramatiq")
    });
    let (_, status) = run(&["status"], &vars);
    assert_hidden(pw, "chouette status", &status);
    assert!(status.contains("queue"), "status printed:\n{status}");
    let output = agent.stop();
    assert_hidden(pw, "the running agent", &output);
    assert!(output.contains("http://***@127.0.0.1"), "URLs stay readable:\n{output}");
    // Nothing was lost meanwhile: the metric (aggregated) and the log are still queued.
    assert_eq!(con.zcard::<_, u64>("chouette:logs:wrapped.keys").unwrap(), 1);
}

#[test]
fn a_dry_run_never_shows_a_url_password() {
    let pw = PASSWORDS[0];
    let (redis, _con) = redis_with_password(pw);
    let vm = VictoriaMetrics::start();
    let mut vars = running_vars(&redis, &vm, pw, closed_port());
    vars.retain(|(name, _)| *name != "COLLECTOR_PLUGINS");
    vars.push(("CHOUETTE_DRY_RUN", "true".into()));
    let agent = Running::start(&vars);
    agent.wait_for("both dry-run POST lines", |out| {
        out.contains("# dry run: POST http://***@127.0.0.1")
            && out.contains("/v1/input")
            && out.contains("leak.check")
    });
    let output = agent.stop();
    assert_hidden(pw, "the dry run", &output);
    assert!(output.contains("dry run on a Redis"), "warns that queued data is deleted:\n{output}");
}
