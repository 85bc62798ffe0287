//! Causeway's configuration.
//!
//! YAML is read strictly into the raw types of [`raw`] (unknown fields are errors), then
//! [`validate`] checks what serde cannot (names, references, ranges) and builds the model of
//! [`model`], which the rest of the gateway uses. Every error carries `file:line:col`.
//! [`diff()`] compares two validated configurations: what a reload changes, by name.

mod diff;
mod duration;
mod env;
mod error;
pub mod model;
mod problems;
mod protocol;
mod raw;
mod ssh;
mod validate;

pub use diff::{Changes, Diff, ListenerChanges, diff, needs_rebind};
pub use error::ConfigError;
pub use model::*;
pub use problems::Problem;
pub use protocol::*;
pub use ssh::*;
pub use validate::{DEFAULT_INSPECTION_TIMEOUT, DEFAULT_TUNNEL_WINDOW, tracing_from_env};

use std::path::Path;

/// Reads and validates a configuration file, its `${VAR}` and `${VAR:-default}` references
/// replaced by the environment's values. A file without a `tracing` section takes it from
/// the standard `OTEL_*` environment variables, as OpenTelemetry SDKs do.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(&file, &e))?;
    let text = env::substitute(&text, |name| std::env::var(name).ok())
        .map_err(|problems| ConfigError::new(&file, problems))?;
    let mut config = parse(&text, &file)?;
    if config.tracing.is_none() {
        config.tracing = tracing_from_env(|name| std::env::var(name).ok())
            .map_err(|message| ConfigError::environment(&file, message))?;
    }
    Ok(config)
}

/// Parses and validates configuration text; `file` names it in error messages.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let raw: raw::Config =
        serde_saphyr::from_str(text).map_err(|e| ConfigError::syntax(file, &e))?;
    validate::validate(raw).map_err(|problems| ConfigError::new(file, problems))
}

/// Host-name patterns, as in route SNIs and certificate names: `*.example.com` matches one
/// or more labels before `.example.com` (not `example.com` itself); anything else matches
/// exactly. Case-insensitive.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            name.len() > suffix.len()
                && name.as_bytes()[name.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes())
        }
        None => pattern.eq_ignore_ascii_case(name),
    }
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn name_patterns() {
        assert!(name_matches(
            "*.chl.mq.ibm.com",
            "app12e-tls.chl.mq.ibm.com"
        ));
        assert!(name_matches("*.chl.mq.ibm.com", "a.b.chl.mq.ibm.com"));
        assert!(!name_matches("*.chl.mq.ibm.com", "chl.mq.ibm.com"));
        assert!(!name_matches("*.chl.mq.ibm.com", "xchl.mq.ibm.com"));
        assert!(name_matches("echo.causeway.test", "echo.causeway.test"));
        assert!(name_matches("Echo.Causeway.Test", "echo.causeway.test"));
        assert!(!name_matches("echo.causeway.test", "x.echo.causeway.test"));
    }
}
