//! Logging setup: pretty lines for a terminal, JSON for a collector, to stderr (stdout
//! is for data). `RUST_LOG`, when set, overrides the configured level. With
//! `privacy.redact_patterns`, every line passes through [`ScrubbingWriter`] first, so no
//! email address or phone number reaches the logs whichever code logged it.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::config::LogFormat;
use crate::privacy::ScrubbingWriter;

pub fn init(format: LogFormat, level: &str, scrub: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let writer = if scrub {
        BoxMakeWriter::new(|| ScrubbingWriter::new(std::io::stderr()))
    } else {
        BoxMakeWriter::new(std::io::stderr)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    // A second init (tests spawn several servers in one process) is harmless.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
