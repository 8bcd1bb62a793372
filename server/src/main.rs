//! `server`: runs the platform in local mode.

use clap::Parser;
use server::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();
    if config.precompress_assets {
        // Needs only the site's location, not a data directory or a runner.
        let dir = match leptos::config::get_configuration(None) {
            Ok(conf) => server::pkg_dir(&conf.leptos_options),
            Err(e) => {
                eprintln!("error: Leptos configuration: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        return match server::assets::precompress(&dir) {
            Ok(done) => {
                for c in done {
                    println!("{}: {} -> {} bytes", c.path.display(), c.size, c.gz_size);
                }
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: precompressing {}: {e}", dir.display());
                std::process::ExitCode::from(1)
            }
        };
    }
    let env = |k: &str| std::env::var_os(k).map(Into::into);
    let resolved = match config.resolve(
        env("HOME"),
        env("XDG_DATA_HOME"),
        std::env::var("USER").ok(),
        std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
    ) {
        Ok(r) => r,
        Err(line) => {
            eprintln!("error: {line}");
            return std::process::ExitCode::from(2);
        }
    };
    if config.login_url {
        return match login_url(&resolved, config.addr).await {
            Ok(url) => {
                println!("{url}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(1)
            }
        };
    }
    let mut leptos = match leptos::config::get_configuration(None) {
        Ok(conf) => conf.leptos_options,
        Err(e) => {
            eprintln!("error: Leptos configuration: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(addr) = config.addr {
        leptos.site_addr = addr;
    }
    let listener = match tokio::net::TcpListener::bind(leptos.site_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", leptos.site_addr);
            return std::process::ExitCode::from(2);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("Ambient Code Platform (local mode) on http://{addr}");
    println!("data: {}", resolved.data_dir.display());
    if !resolved.credentials.has_model() {
        println!(
            "note: no ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL is set; sessions will fail until a project has credentials"
        );
    }
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    match server::run(resolved, leptos, listener, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A new one-time login link for the server of this data directory.
async fn login_url(
    config: &server::config::Resolved,
    addr: Option<std::net::SocketAddr>,
) -> Result<String, platform::db::StoreError> {
    let db = platform::db::Db::open_in(&config.data_dir)?;
    let ids = platform::identity::Identities::open(db, &config.data_dir)?;
    let token = ids.create_login_token().await?;
    let base = match &config.public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => format!(
            "http://{}",
            addr.map(|a| a.to_string())
                .unwrap_or_else(|| "127.0.0.1:3000".into())
        ),
    };
    Ok(format!("{base}/login?token={token}"))
}
