//! The daemons' logging: to stderr, filtered by `RUST_LOG` (`info` by default), as text (with
//! colours on a terminal) or as one JSON object per line.

/// How log lines are written (`--log-format`, `ESTATE_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The logging flags both daemons take (their command line is [`start`]'s).
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "ESTATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// A daemon's command line: the logging flags every daemon takes, then its subcommands.
#[derive(Debug, clap::Parser)]
struct DaemonCli<C: clap::Subcommand> {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: C,
}

/// A daemon's start: parses its command line under its name, version (the daemon's own
/// `CARGO_PKG_VERSION`) and description (help, version and bad flags exit here, as clap does),
/// installs logging as the flags say, and returns the subcommand to run.
pub fn start<C: clap::Subcommand>(name: &'static str, version: &'static str, about: &'static str) -> C {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = DaemonCli::<C>::command().name(name).bin_name(name).version(version).about(about);
    let matches = command.get_matches_mut();
    let cli = DaemonCli::<C>::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit());
    init(cli.log.log_format);
    cli.command
}

/// Installs the process's subscriber; call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
