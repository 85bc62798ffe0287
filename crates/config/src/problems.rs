//! What is wrong with a configuration, and where: [`Problem`], and the collector that
//! validation fills so that every problem is reported at once, not only the first.

use crate::duration::HumanDuration;
use serde_saphyr::{Location, Spanned};
use std::time::Duration;

/// One thing wrong with a configuration, at a place in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl Problem {
    pub(crate) fn at(location: Location, message: impl Into<String>) -> Self {
        Problem {
            line: location.line(),
            column: location.column(),
            message: message.into(),
        }
    }
}

/// The problems found so far. Checks report here and carry on with a stand-in value, so one
/// pass finds them all.
#[derive(Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn add(&mut self, at: Location, message: impl Into<String>) {
        self.0.push(Problem::at(at, message));
    }

    /// A number that must be at least `min`; reports and substitutes `min` otherwise.
    pub(crate) fn at_least<T: Copy + PartialOrd + std::fmt::Display>(
        &mut self,
        value: &Spanned<T>,
        min: T,
        what: &str,
    ) -> T {
        if value.value < min {
            self.add(value.referenced, format!("{what} must be at least {min}"));
            return min;
        }
        value.value
    }

    pub(crate) fn positive(&mut self, value: &Spanned<HumanDuration>, what: &str) -> Duration {
        if value.value.0.is_zero() {
            self.add(value.referenced, format!("{what} must be longer than zero"));
        }
        value.value.0
    }

    /// `value` when nothing was found; otherwise every problem, in file order.
    pub(crate) fn into_result<T>(mut self, value: impl FnOnce() -> T) -> Result<T, Vec<Problem>> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            // Stable: problems at the same place keep the order they were found in.
            self.0.sort_by_key(|p| (p.line, p.column));
            Err(self.0)
        }
    }
}
