//! Why a configuration was refused, as `FILE:LINE:COL: message` lines.

use crate::problems::Problem;
use std::fmt;

/// Why a configuration was refused: every problem found, each as `FILE:LINE:COL: message`.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub(crate) fn new(file: &str, problems: Vec<Problem>) -> Self {
        ConfigError {
            file: file.to_string(),
            problems,
        }
    }

    pub(crate) fn unreadable(file: &str, error: &std::io::Error) -> Self {
        Self::new(
            file,
            vec![Problem {
                line: 0,
                column: 0,
                message: format!("cannot read the file: {error}"),
            }],
        )
    }

    /// An environment variable that stands in for the file (`OTEL_*`) is wrong.
    pub(crate) fn environment(file: &str, message: String) -> Self {
        Self::new(
            file,
            vec![Problem {
                line: 0,
                column: 0,
                message: format!("in the environment: {message}"),
            }],
        )
    }

    /// A YAML syntax error, an unknown field or a value of the wrong type.
    pub(crate) fn syntax(file: &str, error: &serde_saphyr::Error) -> Self {
        let error = error.without_snippet();
        let (line, column) = error
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        // serde-saphyr writes "MESSAGE at line L, column C"; the location goes in front instead.
        let text = error.to_string();
        let first = text.lines().next().unwrap_or_default();
        let suffix = format!(" at line {line}, column {column}");
        let message = first.strip_suffix(&suffix).unwrap_or(first);
        Self::new(
            file,
            vec![Problem {
                line,
                column,
                message: message.to_string(),
            }],
        )
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.line == 0 {
                write!(f, "{}: {}", self.file, p.message)?;
            } else {
                write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, p.message)?;
            }
        }
        Ok(())
    }
}
