//! `chouette`: the agent (no arguments, or `run`), `status`, `dead`, `--help`, `--version`.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT) or for help/version; 2 for a usage or
//! configuration error; 1 for a fatal runtime error (the store cannot be opened, say), so that
//! systemd's `Restart=on-failure` restarts it (the original exited 0 after a crash).

use std::process::ExitCode;

use chouette_agent::agent;
use chouette_agent::cli::{self, Command};
use chouette_agent::config::Config;
use chouette_agent::logging;

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
            print!("{}", cli::HELP);
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

fn config() -> Result<Config, ExitCode> {
    Config::from_env().map_err(|error| {
        eprintln!("chouette: configuration error: {error}");
        ExitCode::from(cli::EXIT_USAGE as u8)
    })
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
            if let chouette_agent::config::StoreConfig::Embedded { path } = &config.store {
                let snapshot = agent::status_snapshot_path(path);
                if let Ok(text) = std::fs::read_to_string(&snapshot) {
                    println!(
                        "(the running agent holds {}; its last status snapshot follows)",
                        path.display()
                    );
                    print!("{text}");
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("chouette: {error}");
            return ExitCode::from(cli::EXIT_FAILURE as u8);
        }
    };
    match cli::render_status(store.as_mut(), &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chouette: {error}");
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
            eprintln!("chouette: {error}");
            return ExitCode::from(cli::EXIT_FAILURE as u8);
        }
    };
    let config = match config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Some(key) = &config.api_key {
        logging::set_secret(key);
    }
    if let Err(error) = logging::init(config.log_level) {
        eprintln!("chouette: cannot set up logging: {error}");
        return ExitCode::from(cli::EXIT_FAILURE as u8);
    }
    log::info!("version={}: Starting Chouette.", env!("CARGO_PKG_VERSION"));
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
