//! `allowgate serve` and `allowgate config check`: configuration, logging, the runtime and the
//! signals; the server itself is `allowgate_server::serve`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use allowgate_server::config::{Config, LogFormat};
use allowgate_types::Printable;

use crate::{LogFormatArg, ServeArgs};

/// Run the server until SIGTERM or Ctrl-C. Exit code 2 for a bad configuration, 1 when a
/// listener cannot start.
pub fn main(db: Option<String>, args: ServeArgs) -> ExitCode {
    let mut config = match &args.config {
        Some(path) => match Config::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                print_config_error(&e);
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    // Flags override the file.
    if let Some(db) = db {
        config.store.url = db;
    }
    if let Some(a) = args.policy {
        config.listen.policy = a;
    }
    if let Some(a) = args.milter {
        config.listen.milter = a;
    }
    if let Some(a) = args.http {
        config.listen.http = a;
    }
    if let Some(f) = args.log_format {
        config.log.format = match f {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    if let Err(e) = check(&config) {
        print_config_error(&e);
        return ExitCode::from(2);
    }
    init_logging(&config);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.runtime.worker_threads > 0 {
        builder.worker_threads(config.runtime.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let mut running = match allowgate_server::serve::start(&config).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::from(1);
            }
        };
        // Shown once, on the terminal of whoever started the server; never logged.
        if let Some((name, password)) = running.take_first_admin() {
            eprintln!(
                "\nNo user existed: created the admin user `{name}`.\n\
                 one-time password: {}\n\
                 It is shown only now (allowgate keeps only a hash of it). More users and API\n\
                 tokens: `allowgate user add`, `allowgate token add`.\n",
                password.as_str()
            );
        }
        let signal = wait_for_signal().await;
        tracing::info!(signal, "shutting down: finishing requests in progress");
        running.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// Flags can set what the file's checks cover (the store URL): check the result again.
fn check(config: &Config) -> Result<(), allowgate_server::config::ConfigError> {
    let text = format!("[store]\nurl = {:?}\n", config.store.url);
    Config::from_toml(&text).map(|_| ())
}

/// Human lines (colour only on a terminal) or JSON, on stderr; `RUST_LOG` overrides the level.
fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match config.log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Waits for Ctrl-C or SIGTERM; returns which.
async fn wait_for_signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
        "SIGTERM"
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<&'static str>();
    tokio::select! {
        s = ctrl_c => s,
        s = term => s,
    }
}

/// `allowgate config check FILE`: 0 and `ok` when valid, 2 and every problem otherwise.
pub fn config_check(path: &Path) -> ExitCode {
    match Config::from_file(path) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_config_error(&e);
            ExitCode::from(2)
        }
    }
}

/// `error: …`, every line printable (a configuration file is input like any other).
fn print_config_error(e: &allowgate_server::config::ConfigError) {
    for (i, line) in e.to_string().lines().enumerate() {
        let prefix = if i == 0 { "error: " } else { "" };
        eprintln!("{prefix}{}", Printable(line));
    }
}
