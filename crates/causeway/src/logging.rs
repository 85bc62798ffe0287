//! The process log on stderr: text lines (the default) or JSON objects, one event per line
//! whatever a peer sent. In text, values from the network (FIX CompIDs, SSH user names, SNI)
//! are printed with their control characters escaped, so a client cannot forge a log line
//! with a newline in its CompID; JSON escapes them by itself. The level can be changed while
//! running (`POST /logging?level=…` on the admin API).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The way the filter in force is replaced at run time.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn init(default: &str, format: Format) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (filter, handle) = reload::Layer::new(filter);
    let _ = FILTER.set(handle);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        Format::Json => registry.with(layer.json().flatten_event(true)).init(),
        Format::Text => {
            let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
                let raw = format!("{value:?}");
                let text = escaped(&raw);
                match field.name() {
                    "message" => write!(writer, "{text}"),
                    name => write!(writer, "{name}={text}"),
                }
            })
            .delimited(" ");
            let layer = layer
                .fmt_fields(fields)
                .with_ansi(std::io::stderr().is_terminal());
            registry.with(layer).init()
        }
    }
}

/// Replaces the filter in force (`info`, `debug`, `causeway_proxy=trace`…) until the next
/// change or restart.
pub fn set_level(filter: &str) -> Result<(), String> {
    let parsed = EnvFilter::try_new(filter).map_err(|e| format!("log level `{filter}`: {e}"))?;
    let handle = FILTER.get().ok_or("logging is not set up")?;
    handle.reload(parsed).map_err(|e| e.to_string())?;
    tracing::info!(filter, "log level changed");
    Ok(())
}

/// `text` with every control character written as an escape (`\n`, `\u{1b}`).
fn escaped(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c.is_control() {
            true => {
                let _ = write!(out, "{}", c.escape_default());
            }
            false => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::escaped("CLIENT1"), "CLIENT1");
        assert_eq!(
            super::escaped("A\nWARN forged\r\x1b[31m"),
            "A\\nWARN forged\\r\\u{1b}[31m"
        );
    }
}
