//! From what was written to what runs: defaults filled in, names and references checked,
//! every problem reported at its place in the file.
//!
//! One module per section of the file; this one walks the sections in the order they can
//! refer to each other (identities and authorizers, then clusters, then listeners), so each
//! reference is checked against the names defined before it.

mod authz;
mod clusters;
mod connect;
mod gateway;
mod listeners;
mod names;
mod routes;
mod ssh;
mod telemetry;
mod tls;
mod tracing;
mod values;

pub use clusters::DEFAULT_TUNNEL_WINDOW;
pub use listeners::DEFAULT_INSPECTION_TIMEOUT;
pub use tracing::tracing_from_env;

use crate::problems::{Problem, Problems};
use crate::{model, raw};
use names::Names;

pub fn validate(raw: raw::Config) -> Result<model::Config, Vec<Problem>> {
    let mut problems = Problems::default();
    let workers = gateway::workers(&mut problems, raw.workers.as_ref());
    let drain = gateway::drain(&mut problems, &raw.drain);
    let max_connections = gateway::max_connections(&mut problems, raw.max_connections);
    let admin = telemetry::admin(&mut problems, raw.admin);
    let access_log = telemetry::access_log(&mut problems, raw.access_log);
    let metrics = telemetry::metrics(&mut problems, raw.metrics);
    let tracing = raw.tracing.map(|t| tracing::tracing(&mut problems, t));

    let mut names = Names::default();
    let identities = tls::identities(&mut problems, raw.identities, &mut names);
    let authorizers = authz::authorizers(&mut problems, raw.authorizers, &mut names);
    let clusters = clusters::clusters(&mut problems, raw.clusters, &mut names);
    let listeners = listeners::listeners(&mut problems, raw.listeners, &names);
    let reload = gateway::reload(raw.reload);
    let relay = gateway::relay(raw.relay);

    problems.into_result(|| model::Config {
        workers,
        max_connections,
        drain,
        admin,
        metrics,
        access_log,
        tracing,
        identities,
        authorizers,
        reload,
        relay,
        listeners,
        clusters,
    })
}
