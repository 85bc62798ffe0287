//! Top-level settings of the gateway process: worker threads, the global connection limit,
//! draining, and what a reload does to live connections.

use crate::duration::HumanDuration;
use crate::problems::Problems;
use crate::{model, raw};
use serde_saphyr::Spanned;
use std::time::Duration;

pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One per core unless the config says otherwise.
pub(super) fn workers(problems: &mut Problems, workers: Option<&Spanned<usize>>) -> usize {
    match workers {
        Some(w) => problems.at_least(w, 1, "workers"),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

pub(super) fn max_connections(
    problems: &mut Problems,
    max_connections: Option<Spanned<usize>>,
) -> Option<usize> {
    max_connections.map(|m| problems.at_least(&m, 1, "max_connections"))
}

pub(super) fn drain(problems: &mut Problems, raw: &raw::Drain) -> model::Drain {
    let get =
        |d: &Option<Spanned<HumanDuration>>, default| d.as_ref().map_or(default, |d| d.value.0);
    let drain = model::Drain {
        timeout: get(&raw.timeout, DEFAULT_DRAIN_TIMEOUT),
        delay: get(&raw.delay, Duration::ZERO),
        spread: get(&raw.spread, Duration::ZERO),
    };
    if let Some(delay) = &raw.delay
        && drain.delay >= drain.timeout
    {
        problems.add(
            delay.referenced,
            "drain.delay must be shorter than drain.timeout",
        );
    }
    if let Some(spread) = &raw.spread
        && drain.spread > drain.timeout.saturating_sub(drain.delay)
    {
        problems.add(
            spread.referenced,
            "drain.spread must fit in the window after drain.delay (spread <= timeout - delay)",
        );
    }
    drain
}

pub(super) fn relay(raw: raw::Relay) -> model::Relay {
    model::Relay {
        // Off by default: on this machine splice halves the CPU per GiB but moves fewer
        // bytes per second on one stream (bench/RESULTS-splice.md).
        splice: raw.splice.unwrap_or(false),
    }
}

pub(super) fn reload(raw: raw::Reload) -> model::Reload {
    model::Reload {
        watch: raw.watch.unwrap_or(false),
        removed_cluster_connections: match raw.removed_cluster_connections {
            None | Some(raw::RemovedConnections::Keep) => model::RemovedConnections::Keep,
            Some(raw::RemovedConnections::Close) => model::RemovedConnections::Close,
        },
    }
}
