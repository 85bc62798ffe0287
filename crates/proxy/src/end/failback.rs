//! Failback, the one place it is watched for: when an endpoint of a `failback: close`
//! cluster recovers, the connections on that cluster's less preferred (standby) endpoints
//! are asked to close, so their clients reconnect to the recovered one. Clusters only say
//! that an endpoint recovered; they know no connection.

use super::registry::{CloseReason, Registry};
use crate::dial::cluster::{Cluster, Endpoint, Recovered};
use std::sync::Arc;

/// What clusters tell of a recovered endpoint, acted on through `registry`.
pub fn closer(registry: Arc<Registry>) -> Recovered {
    Recovered(Arc::new(move |cluster: &Cluster, recovered: &Endpoint| {
        if cluster.config.failback != config::Failback::Close {
            return;
        }
        let on_standby = |live: &super::registry::Live| {
            live.upstream().is_some_and(|u| {
                u.endpoint.priority > recovered.priority
                    && cluster
                        .endpoints
                        .iter()
                        .any(|e| Arc::ptr_eq(e, &u.endpoint))
            })
        };
        let closed = registry.close_where(CloseReason::Failback, on_standby);
        if closed > 0 {
            tracing::info!(
                cluster = %cluster.config.name,
                connections = closed,
                "failback: closing the connections on standby endpoints"
            );
        }
    }))
}
