//! `runner`: runs one session's agent; started by the operator with its configuration in
//! the environment.

use clap::Parser;
use runner::config::RawConfig;

// One thread: the runner moves one stream of events between two pipes and a socket; a
// multi-threaded runtime (and a malloc arena per thread) only costs memory here.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    // A plain level (RUST_LOG=debug|info|warn|error) rather than filter directives: the
    // directive parser's regular expressions cost more memory than the runner's own work.
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    // Orphans of the agent (a command that detached) stay our descendants, so a stop can
    // find and end them.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "could not become a child subreaper");
    }
    let config = match RawConfig::try_parse()
        .map_err(|e| e.to_string())
        .and_then(RawConfig::validate)
    {
        Ok(c) => c,
        Err(line) => {
            eprintln!(
                "runner: configuration error: {}",
                line.lines().next().unwrap_or_default()
            );
            return std::process::ExitCode::from(runner::session::exit::PREREQUISITE as u8);
        }
    };
    tracing::info!(session = %config.session_name, generation = config.generation, resume = config.resume, "runner starting");
    let code = runner::session::run(config).await;
    tracing::info!(code, "runner exiting");
    std::process::ExitCode::from(code as u8)
}
