//! The built `chouette` binary's command line: help, version, usage errors and exit codes.

use chouette_tests::agent_binary;
use std::process::{Command, Output};

fn chouette(args: &[&str]) -> Output {
    Command::new(agent_binary!()).args(args).env_clear().output().expect("the chouette binary runs")
}

#[test]
fn help_prints_usage_and_every_variable() {
    for flag in ["--help", "-h", "help"] {
        let out = chouette(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text, chouette_agent::cli::help(), "{flag}");
        assert!(text.contains("chouette status"));
        assert!(text.contains("RELEASE_INTERVAL"));
        assert!(out.stderr.is_empty());
    }
}

#[test]
fn version_prints_the_package_version() {
    for flag in ["--version", "-V"] {
        let out = chouette(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("chouette {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn usage_errors_exit_2_with_a_hint() {
    for args in [&["--frobnicate"][..], &["status", "extra"], &["RUN"]] {
        let out = chouette(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("chouette --help"), "{args:?}: {err}");
    }
}
