//! `kcl-multilang`: the command line. Same arguments as the Java `MultiLangDaemon` (`--properties-file FILE`, `-p
//! FILE` or the file as the only argument), plus `--properties FILE` and `--help-keys`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kcl_multilang::config::{DaemonConfig, Notice, keys_table};

/// Runs MultiLangDaemon record processors (amazon-kclpy, aws-kcl, ...) on kcl-rs, without a JVM.
#[derive(Parser)]
#[command(name = "kcl-multilang", version)]
struct Args {
    /// The Java MultiLangDaemon properties file.
    #[arg(long = "properties", short = 'p', visible_alias = "properties-file", value_name = "FILE")]
    properties: Option<PathBuf>,
    /// The properties file, as the Java daemon also accepts it.
    #[arg(value_name = "FILE", conflicts_with = "properties")]
    file: Option<PathBuf>,
    /// Accepted for compatibility with the Java daemon's `--log-configuration` (logback); use `RUST_LOG` instead.
    #[arg(long = "log-configuration", short = 'l', value_name = "FILE", hide = true)]
    log_configuration: Option<PathBuf>,
    /// Print the properties keys kcl-multilang reads, with their meaning, and exit.
    #[arg(long)]
    help_keys: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.help_keys {
        print!("{}", keys_table());
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if args.log_configuration.is_some() {
        tracing::warn!(
            "--log-configuration (logback) is ignored: set RUST_LOG, e.g. RUST_LOG=info,kcl_multilang::child=warn"
        );
    }
    let Some(path) = args.properties.or(args.file) else {
        eprintln!("kcl-multilang: give the properties file: kcl-multilang --properties app.properties");
        return ExitCode::from(2);
    };
    let config = match DaemonConfig::load(&path) {
        Ok((config, notices)) => {
            for notice in notices {
                match notice {
                    Notice::UnknownKey { .. } => tracing::warn!("{}: {notice}", path.display()),
                    Notice::WithoutEffect { .. } => tracing::info!("{}: {notice}", path.display()),
                }
            }
            config
        }
        Err(error) => {
            eprintln!("kcl-multilang: {error}");
            return ExitCode::from(2);
        }
    };
    // Two worker threads are plenty: the work is waiting on children and the network.
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kcl-multilang: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kcl_multilang::run(config)) {
        Ok(()) => {
            tracing::info!("kcl-multilang stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}
