//! Logging: `tracing` to stderr (the journal under systemd), in the format and at the level of
//! `[log]`. `RUST_LOG`, when set, wins over `[log] level`, so an operator can turn up one module
//! for one run without editing the file. Default: `info`, human-readable, coloured only on a
//! terminal. `json` writes one object a line, with the fields of the current span (`doc_id`,
//! `dept`) for a log collector to index.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSection};

/// Installs the global subscriber once; later calls are ignored.
pub fn init_tracing(log: &LogSection) {
    let configured = log.level.as_ref().map_or("info", |l| l.as_str());
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::try_new(env).ok(),
        _ => None,
    }
    .unwrap_or_else(|| EnvFilter::new(configured));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format.unwrap_or(LogFormat::Human) {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}
