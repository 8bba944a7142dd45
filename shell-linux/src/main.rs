//! Minimal dispatcher (placeholder: the lead's main.rs with the run loop replaces it).

use chouette_agent::cli::{self, Command};

fn main() {
    match cli::parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Help) => print!("{}", cli::HELP),
        Ok(Command::Version) => println!("{}", cli::VERSION),
        Ok(Command::Run | Command::Status) => {
            eprintln!("chouette: not yet wired");
            std::process::exit(cli::EXIT_FAILURE);
        }
        Err(e) => {
            eprintln!("chouette: {e}");
            std::process::exit(cli::EXIT_USAGE);
        }
    }
}
