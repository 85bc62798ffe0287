//! The process log: text lines on stderr, one event per line whatever a peer sent. Values
//! from the network (FIX CompIDs, SSH user names, SNI) are printed with their control
//! characters escaped, so a client cannot forge a log line with a newline in its CompID.

use std::fmt::Write as _;
use std::io::IsTerminal;
use tracing_subscriber::field::MakeExt;

pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let raw = format!("{value:?}");
        let text = escaped(&raw);
        match field.name() {
            "message" => write!(writer, "{text}"),
            name => write!(writer, "{name}={text}"),
        }
    })
    .delimited(" ");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(fields)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
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
