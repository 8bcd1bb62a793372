//! The `mock-anthropic` binary: serves the mock until SIGTERM or SIGINT.

mod config;

use std::io::{IsTerminal, Write};

use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let settings = match config::Config::parse().validate() {
        Ok(settings) => settings,
        Err(err) => exit_with(&err),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let listener = match TcpListener::bind(settings.addr).await {
        Ok(listener) => listener,
        Err(err) => exit_with(&format!("cannot listen on {}: {err}", settings.addr)),
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(err) => exit_with(&err),
    };
    // Tests wait for this exact line to learn the port.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "mock-anthropic listening on http://{addr}");
    let _ = stdout.flush();
    if let Err(err) = mock_anthropic::run(listener, settings.mock, shutdown_signal()).await {
        exit_with(&err);
    }
}

fn exit_with(err: &dyn std::fmt::Display) -> ! {
    eprintln!("mock-anthropic: {err}");
    std::process::exit(2)
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = interrupt.await;
        }
    }
    tracing::info!("shutting down");
}
