//! The command line: `chouette [run]`, `chouette status`, `chouette dead ...` ([`dead`]),
//! `--help`, `--version`.
//!
//! Hand-written (no argument-parsing crate): four commands do not justify the binary size.
//!
//! Exit codes: 0 ok or clean shutdown (SIGTERM/SIGINT), 2 usage or configuration error, 1 fatal
//! runtime error (the store cannot be opened, a crash). The original exited 0 after a crash
//! (compat §7 item 14), which defeated `Restart=on-failure`.

use std::ffi::OsStr;
use std::io::{self, Write};

use crate::store::{Queue, Store};

pub mod dead;

/// Exit code: success, or a clean shutdown after SIGTERM / SIGINT.
pub const EXIT_OK: i32 = 0;
/// Exit code: a fatal runtime error (store unavailable at startup, internal error).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: a usage error (unknown command or option) or a configuration error.
pub const EXIT_USAGE: i32 = 2;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `chouette` or `chouette run`: run the agent until SIGTERM / SIGINT.
    Run,
    /// `chouette status`: print queue sizes and the agent's status hash, then exit.
    Status,
    /// `chouette dead list|requeue|purge ...`: the dead-letter queues ([`dead`]).
    Dead(dead::DeadArgs),
    /// `chouette dead --help`: print [`dead::HELP`].
    DeadHelp,
    /// `chouette --help` (`-h`, `help`): print [`help`].
    Help,
    /// `chouette --version` (`-V`, `version`): print `chouette <version>`.
    Version,
}

/// A command line that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A first argument that is no command or option.
    #[error("unknown command or option {0:?} (try `chouette --help`)")]
    Unknown(String),
    /// An argument after the command.
    #[error("unexpected argument {argument:?} after `{command}` (try `chouette --help`)")]
    Unexpected {
        /// The command already read.
        command: String,
        /// The extra argument.
        argument: String,
    },
    /// A `chouette dead` command line that cannot be understood.
    #[error("dead: {0} (try `chouette dead --help`)")]
    Dead(String),
}

/// Parses the arguments **after** the program name (`std::env::args_os().skip(1)`).
pub fn parse_args<I>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator,
    I::Item: AsRef<OsStr>,
{
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Ok(Command::Run);
    };
    let first = first.as_ref().to_string_lossy().into_owned();
    if first == "dead" {
        let rest: Vec<String> = args.map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
        return match dead::parse_args(&rest)? {
            dead::Parsed::Run(parsed) => Ok(Command::Dead(parsed)),
            dead::Parsed::Help => Ok(Command::DeadHelp),
        };
    }
    let command = match first.as_str() {
        "run" => Command::Run,
        "status" => Command::Status,
        "-h" | "--help" | "help" => Command::Help,
        "-V" | "--version" | "version" => Command::Version,
        _ => return Err(CliError::Unknown(first)),
    };
    if let Some(extra) = args.next() {
        let argument = extra.as_ref().to_string_lossy().into_owned();
        // `chouette status --help` and the like: help wins.
        if matches!(argument.as_str(), "-h" | "--help") {
            return Ok(Command::Help);
        }
        return Err(CliError::Unexpected { command: first, argument });
    }
    Ok(command)
}

/// `chouette --version`'s output (without the newline).
pub const VERSION: &str = concat!("chouette ", env!("CARGO_PKG_VERSION"));

/// The head of `chouette --help`: usage, commands and exit codes ([`help`] adds the variables).
pub const HELP_HEAD: &str = "\
chouette: the Chouette agent. Reads metrics and logs that applications queue in Redis (the
Chouette-IoT layout) or in an embedded store, aggregates them and ships them to Datadog, InfluxDB,
OpenTSDB or a compatible backend, losing nothing. A drop-in replacement for
`python -m chouette_iot`.

USAGE:
    chouette [run]        run the agent until SIGTERM / SIGINT (then drain and exit)
    chouette status       print queue sizes, the last dispatch results and the
                          refused/dropped counters, then exit
    chouette dead list|requeue|purge [options]
                          list dead letters by queue and reason, put them back into their
                          queue once the cause is fixed, or delete them (chouette dead --help)
    chouette --help       print this help (-h)
    chouette --version    print the version (-V)

EXIT CODES:
    0  ok, or clean shutdown after SIGTERM / SIGINT
    1  fatal runtime error (store unavailable at startup, internal error)
    2  usage error or configuration error (the message names the variable)

";

/// `chouette --help`'s output: [`HELP_HEAD`], then every environment variable by section, from
/// the table of variables ([`crate::config::vars::VARS`]), as `docs/configuration.md` shows them.
pub fn help() -> String {
    format!("{HELP_HEAD}{}", crate::config::docs::help_variables())
}

/// Prints each queue's length ([`Queue::ALL`]) and every field of the agent's status hash,
/// sorted by name, one per line. Fields named `*_at` holding Unix seconds also show the UTC time.
///
/// A store error is returned as an [`io::Error`] of kind [`io::ErrorKind::Other`] wrapping the
/// [`crate::store::StoreError`] (what was printed before it stays printed).
pub fn render_status(store: &mut dyn Store, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "store: {}", store.describe())?;
    writeln!(out, "queues:")?;
    let width = Queue::ALL.iter().map(|q| q.name().len()).max().unwrap_or(0);
    for queue in Queue::ALL {
        let len = store.len(queue).map_err(io::Error::other)?;
        writeln!(out, "  {:<width$}  {len}", queue.name())?;
    }
    let links = store.link_states().map_err(io::Error::other)?;
    if !links.is_empty() {
        // The serial link's committed de-duplication state per device (its counters are
        // `serial.<device>.*` status fields): opaque to the agent's store, shown in hex.
        writeln!(out, "serial links:")?;
        let width = links.iter().map(|(d, _)| d.len()).max().unwrap_or(0);
        for (device, state) in &links {
            let hex: String = state.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(out, "  {device:<width$}  state {hex}")?;
        }
    }
    let mut fields = store.status().map_err(io::Error::other)?;
    fields.sort();
    writeln!(out, "status:")?;
    if fields.is_empty() {
        writeln!(out, "  (empty: the agent has not run against this store yet)")?;
        return Ok(());
    }
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in &fields {
        let when = key
            .ends_with("_at")
            .then(|| value.trim().parse::<f64>().ok())
            .flatten()
            .filter(|t| t.is_finite())
            .map(|t| format!(" ({})", crate::logging::format_asctime(t.floor() as i64)))
            .unwrap_or_default();
        writeln!(out, "  {key:<width$}  {value}{when}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AggregationCommit, DeadRecord, NewRecord, Record, StoreError};

    #[test]
    fn commands() {
        let none: [&str; 0] = [];
        assert_eq!(parse_args(none), Ok(Command::Run));
        assert_eq!(parse_args(["run"]), Ok(Command::Run));
        assert_eq!(parse_args(["status"]), Ok(Command::Status));
        for help in ["-h", "--help", "help"] {
            assert_eq!(parse_args([help]), Ok(Command::Help));
        }
        for version in ["-V", "--version", "version"] {
            assert_eq!(parse_args([version]), Ok(Command::Version));
        }
        assert_eq!(parse_args(["status", "--help"]), Ok(Command::Help));
        assert_eq!(parse_args(["dead", "--help"]), Ok(Command::DeadHelp));
        assert!(matches!(parse_args(["dead", "list"]), Ok(Command::Dead(_))));
        let err = parse_args(["dead", "list", "--queue", "x"]).unwrap_err();
        assert!(err.to_string().contains("chouette dead --help"), "{err}");
    }

    #[test]
    fn usage_errors() {
        assert_eq!(parse_args(["--verbose"]), Err(CliError::Unknown("--verbose".into())));
        assert_eq!(parse_args(["Run"]), Err(CliError::Unknown("Run".into())));
        let err = parse_args(["status", "now"]).unwrap_err();
        assert_eq!(err.to_string(), "unexpected argument \"now\" after `status` (try `chouette --help`)");
        assert!(parse_args(["run", "x"]).is_err());
    }

    #[test]
    fn version_and_help() {
        assert_eq!(VERSION, format!("chouette {}", env!("CARGO_PKG_VERSION")));
        let help = help();
        for var in crate::config::vars::VARS {
            assert!(help.contains(&format!("    {} ", var.name)), "help lacks {}", var.name);
        }
        assert!(help.lines().all(|l| l.chars().count() <= 100));
    }

    /// A fake store: lengths per queue, a status hash and link states.
    struct Fake {
        status: Vec<(String, String)>,
        fail: bool,
        links: Vec<(String, Vec<u8>)>,
    }

    impl Store for Fake {
        fn describe(&self) -> String {
            "fake".into()
        }
        fn ping(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn read_page(&mut self, _: Queue, _: f64, _: usize, _: usize) -> Result<Vec<Record>, StoreError> {
            unimplemented!()
        }
        fn read_above(&mut self, _: Queue, _: f64, _: usize) -> Result<Vec<Record>, StoreError> {
            unimplemented!()
        }
        fn dead_letter_oversize(&mut self, _: Queue, _: &[Record]) -> Result<u64, StoreError> {
            unimplemented!()
        }
        fn oldest_score(&mut self, _: Queue) -> Result<Option<f64>, StoreError> {
            unimplemented!()
        }
        fn commit_aggregation(&mut self, _: &AggregationCommit) -> Result<(), StoreError> {
            unimplemented!()
        }
        fn aggregated_until(&mut self) -> Result<Option<f64>, StoreError> {
            unimplemented!()
        }
        fn add(&mut self, _: Queue, _: &[NewRecord]) -> Result<(), StoreError> {
            unimplemented!()
        }
        fn add_to_each(&mut self, _: &[Queue], _: &[NewRecord]) -> Result<(), StoreError> {
            unimplemented!()
        }
        fn delete(&mut self, _: Queue, _: &[bytes::Bytes]) -> Result<(), StoreError> {
            unimplemented!()
        }
        fn dead_letter(&mut self, _: Queue, _: &[DeadRecord]) -> Result<(), StoreError> {
            unimplemented!()
        }
        fn cleanup(&mut self, _: Queue, _: f64) -> Result<u64, StoreError> {
            unimplemented!()
        }
        fn len(&mut self, queue: Queue) -> Result<u64, StoreError> {
            if self.fail && queue == Queue::Logs {
                return Err(StoreError::Unavailable {
                    store: "fake".into(),
                    op: "ZCARD",
                    detail: "connection refused".into(),
                });
            }
            Ok(Queue::ALL.iter().position(|q| *q == queue).unwrap() as u64 * 10)
        }
        fn put_status(&mut self, _: &[(&str, String)]) -> Result<(), StoreError> {
            unimplemented!()
        }
        fn status(&mut self) -> Result<Vec<(String, String)>, StoreError> {
            Ok(self.status.clone())
        }
        fn link_states(&mut self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            Ok(self.links.clone())
        }
    }

    #[test]
    fn status_lists_queues_and_sorted_fields() {
        let mut store = Fake {
            status: vec![
                ("metrics_dropped_ttl".into(), "3".into()),
                ("last_release_at".into(), "1795310737.5".into()),
                ("last_release_result".into(), "202 accepted 120 points".into()),
            ],
            fail: false,
            links: vec![],
        };
        let mut out = Vec::new();
        render_status(&mut store, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "store: fake\n\
             queues:\n  \
               raw metrics            0\n  \
               wrapped metrics        10\n  \
               logs                   20\n  \
               dead raw metrics       30\n  \
               dead wrapped metrics   40\n  \
               dead logs              50\n  \
               influxdb metrics       60\n  \
               dead influxdb metrics  70\n  \
               opentsdb metrics       80\n  \
               dead opentsdb metrics  90\n  \
               events                 100\n  \
               dead events            110\n  \
               service checks         120\n  \
               dead service checks    130\n\
             status:\n  \
               last_release_at      1795310737.5 (2026-11-22T01:25:37+0000)\n  \
               last_release_result  202 accepted 120 points\n  \
               metrics_dropped_ttl  3\n"
        );
    }

    #[test]
    fn status_of_a_fresh_store_and_a_failing_one() {
        let mut fresh = Fake { status: vec![], fail: false, links: vec![] };
        let mut out = Vec::new();
        render_status(&mut fresh, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("(empty: the agent"));

        let mut failing = Fake { status: vec![], fail: true, links: vec![] };
        let mut out = Vec::new();
        let err = render_status(&mut failing, &mut out).unwrap_err();
        assert!(err.to_string().contains("connection refused"), "{err}");
    }

    #[test]
    fn status_lists_serial_link_states_in_hex() {
        let links = vec![("/dev/ttyUSB0".into(), vec![0x00, 0xab, 0x10]), ("unix:/tmp/u".into(), vec![0x7f])];
        let mut store =
            Fake { status: vec![("serial./dev/ttyUSB0.gaps".into(), "2".into())], fail: false, links };
        let mut out = Vec::new();
        render_status(&mut store, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "  dead service checks    130\n\
                 serial links:\n  \
                   /dev/ttyUSB0  state 00ab10\n  \
                   unix:/tmp/u   state 7f\n\
                 status:\n  \
                   serial./dev/ttyUSB0.gaps  2\n"
            ),
            "{text}"
        );
    }
}
