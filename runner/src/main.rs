//! `runner`: runs one session's agent; started by the operator with its configuration in
//! the environment.

use clap::Parser;
use runner::config::RawConfig;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
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
