//! `runner`: runs one session's agent; started by the operator with its configuration in
//! the environment. `runner keeper` is a runner pod's credentials container; `runner files`
//! serves a stopped session's workspace.

use runner::config::Config;

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
    // Not dumpable: no other process of this user (the agent, where it shares the uid: a
    // Kubernetes pod, an unconfined run) may read this process's environment or memory
    // through /proc, where the model key, git tokens and the runner token are.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("runner: cannot hide its memory from other processes: {e}");
        return std::process::ExitCode::from(model::runner_env::exit::PREREQUISITE as u8);
    }
    // Orphans of the agent (a command that detached) stay our descendants, so a stop can
    // find and end them; they are reaped when they exit.
    match nix::sys::prctl::set_child_subreaper(true) {
        Ok(()) => runner::reap::start(),
        Err(e) => tracing::warn!(error = %e, "could not become a child subreaper"),
    }
    // `runner keeper`: the credentials container of a runner pod.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "keeper") {
        let code = runner::keeper::main(args.into_iter().skip(1)).await;
        return std::process::ExitCode::from(code as u8);
    }
    // `runner files`: a stopped session's workspace, served to the Files panel.
    if args.get(1).is_some_and(|a| a == "files") {
        let code = runner::serve_files::main(args.into_iter().skip(1)).await;
        return std::process::ExitCode::from(code as u8);
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("runner: {e}");
            return std::process::ExitCode::from(e.exit_code() as u8);
        }
    };
    tracing::info!(session = %config.session_name, generation = config.generation, resume = config.resume, "runner starting");
    let code = runner::session::run(config).await;
    tracing::info!(code, "runner exiting");
    std::process::ExitCode::from(code as u8)
}
