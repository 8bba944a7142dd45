//! `chouette`: the agent (no arguments, or `run`), `status`, `dead`, `--help`, `--version`.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT) or for help/version; 2 for a usage or
//! configuration error; 1 for a fatal runtime error (the store cannot be opened, say), so that
//! systemd's `Restart=on-failure` restarts it (the original exited 0 after a crash).
//!
//! Nothing printed here shows a secret: the API key and the credentials of every URL are
//! registered with [`logging`] as soon as the configuration is read, and every line (log lines
//! and the messages printed before logging starts) goes through [`logging::redact`].

use std::process::ExitCode;

use chouette_agent::agent;
use chouette_agent::cli::{self, Command};
use chouette_agent::config::{Config, StoreConfig};
use chouette_agent::{logging, notify};

fn main() -> ExitCode {
    let command = match cli::parse_args(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("chouette: {error}\n(see `chouette --help`)");
            return ExitCode::from(cli::EXIT_USAGE as u8);
        }
    };
    match command {
        Command::Help => {
            print!("{}", cli::help());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("{}", cli::VERSION);
            ExitCode::SUCCESS
        }
        Command::Status => status(),
        Command::DeadHelp => {
            print!("{}", cli::dead::HELP);
            ExitCode::SUCCESS
        }
        Command::Dead(args) => dead(&args),
        Command::Run => run(),
    }
}

/// Prints `chouette: {message}` on stderr, registered secrets redacted.
fn say(message: impl std::fmt::Display) {
    eprintln!("chouette: {}", logging::redact(&message.to_string()));
}

/// Reads the configuration and registers its secrets for redaction.
fn config() -> Result<Config, ExitCode> {
    let config = Config::from_env().map_err(|error| {
        say(format_args!("configuration error: {error}"));
        ExitCode::from(cli::EXIT_USAGE as u8)
    })?;
    for secret in config.secrets() {
        logging::add_secret(&secret);
    }
    Ok(config)
}

fn status() -> ExitCode {
    let config = match config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let mut store = match agent::open_store(&config) {
        Ok(store) => store,
        Err(error) => {
            // The embedded store's file is locked while the agent runs: show its last snapshot.
            if let StoreConfig::Embedded { path } = &config.store {
                if let Ok(text) = agent::read_status_snapshot(path) {
                    println!(
                        "(the running agent holds {}; its last status snapshot follows)",
                        path.display()
                    );
                    print!("{}", logging::redact(&text));
                    return ExitCode::SUCCESS;
                }
            }
            say(error);
            return ExitCode::from(cli::EXIT_FAILURE as u8);
        }
    };
    // Rendered whole, then scrubbed: the status hash holds text the agent wrote (errors).
    let mut text = Vec::new();
    match cli::render_status(store.as_mut(), &mut text) {
        Ok(()) => {
            print!("{}", logging::redact(&String::from_utf8_lossy(&text)));
            ExitCode::SUCCESS
        }
        Err(error) => {
            say(error);
            ExitCode::from(cli::EXIT_FAILURE as u8)
        }
    }
}

fn dead(args: &cli::dead::DeadArgs) -> ExitCode {
    let config = match config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let mut store = match cli::dead::open_store(&config) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("chouette: {error}");
            return ExitCode::from(cli::EXIT_FAILURE as u8);
        }
    };
    let description = match &config.store {
        chouette_agent::config::StoreConfig::Embedded { path } => format!("embedded:{}", path.display()),
        chouette_agent::config::StoreConfig::Redis { .. } => String::new(),
    };
    let mut out = std::io::stdout().lock();
    let now = agent::wall_clock();
    let result = match store.as_mut() {
        Some(store) => cli::dead::run(Some(store.as_mut()), &description, args, now, &mut out),
        None => cli::dead::run(None, &description, args, now, &mut out),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(error) => {
            eprintln!("chouette: {error}");
            ExitCode::from(cli::EXIT_FAILURE as u8)
        }
    }
}

fn run() -> ExitCode {
    // Signal handlers first: a SIGTERM during startup is then a clean stop, not a kill.
    let shutdown = match agent::shutdown_flag() {
        Ok(flag) => flag,
        Err(error) => {
            say(error);
            return ExitCode::from(cli::EXIT_FAILURE as u8);
        }
    };
    let config = match config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    // A Redis and nowhere to send to: a dry run would print and delete what the apps queued.
    if let Err(error) = config.check_output() {
        say(format_args!("configuration error: {error}"));
        return ExitCode::from(cli::EXIT_USAGE as u8);
    }
    // A panic's message may quote a value (a URL): scrub it like every other line.
    std::panic::set_hook(Box::new(|info| say(format_args!("panic: {info}"))));
    if let Err(error) = logging::init(config.log_level) {
        say(format_args!("cannot set up logging: {error}"));
        return ExitCode::from(cli::EXIT_FAILURE as u8);
    }
    log::info!("version={}: Starting Chouette.", env!("CARGO_PKG_VERSION"));
    if let (true, StoreConfig::Redis { url, .. }) = (config.dry_run, &config.store) {
        log::warn!(
            "store={} CHOUETTE_DRY_RUN=true: dry run on a Redis; what the apps queued is printed and deleted",
            chouette_agent::config::redact_url(url)
        );
    }
    notify::init_from_env(&config);
    // The aggregator lives on the heap, but building it passes through the stack in debug
    // builds: give the agent's thread room for it.
    let worker = std::thread::Builder::new()
        .name("chouette".into())
        .stack_size(64 << 20)
        .spawn(move || agent::run(&config, &shutdown));
    match worker.map(|handle| handle.join()) {
        Ok(Ok(Ok(()))) => {
            log::info!("Chouette stopped.");
            ExitCode::SUCCESS
        }
        Ok(Ok(Err(error))) => {
            log::error!("{error}: exiting");
            ExitCode::from(cli::EXIT_FAILURE as u8)
        }
        Ok(Err(_)) => {
            log::error!("the agent thread panicked: exiting");
            ExitCode::from(cli::EXIT_FAILURE as u8)
        }
        Err(error) => {
            log::error!("cannot start the agent thread: {error}");
            ExitCode::from(cli::EXIT_FAILURE as u8)
        }
    }
}
