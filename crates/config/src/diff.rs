//! What a reload changes: the new configuration compared with the running one, object by
//! object and by name, without a socket or a file opened, so the gateway can plan a reload
//! (and report it) before it touches anything.
//!
//! Names in each list follow the new configuration's order; removed ones, the old one's.
//! Order alone is not a change: the gateway finds listeners, clusters, identities and
//! authorizers by name.

use crate::model::{Config, Listener, Reload};
use serde::Serialize;
use std::collections::HashMap;

/// What a reload from one configuration to another changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Diff {
    pub listeners: ListenerChanges,
    /// An unchanged cluster keeps running with its health state; a replaced one is started
    /// anew (and its live connections treated as those of a removed one).
    pub clusters: Changes,
    /// An unchanged identity keeps its material; a replaced one is started again (its files
    /// read, or its SPIRE stream opened).
    pub identities: Changes,
    /// An unchanged authorizer keeps its connection, cache and counts.
    pub authorizers: Changes,
    /// Top-level settings that changed and apply from this reload: `max_connections`,
    /// `drain`, `reload.removed_cluster_connections`.
    pub settings: Vec<&'static str>,
    /// Top-level settings that changed but take effect only when the gateway restarts:
    /// `workers` (the runtime's threads), `admin` (its socket), `metrics` (the statsd
    /// exporter), `access_log` (the open file) and `reload.watch` (the file watcher). The
    /// gateway keeps the running values and should say so.
    pub restart_required: Vec<&'static str>,
}

/// Listeners compared by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ListenerChanges {
    pub added: Vec<String>,
    /// They stop accepting; their live connections drain.
    pub removed: Vec<String>,
    /// In both, but the socket must be bound again (see [`needs_rebind`]).
    pub rebound: Vec<String>,
    /// In both, on the same socket, with other settings changed (routes, limits, socket
    /// options changed in place, ...).
    pub updated: Vec<String>,
    /// In both, configured the same. Their routes still point at the clusters, identities
    /// and authorizers of the new configuration, which may have been replaced.
    pub unchanged: Vec<String>,
}

/// Objects compared by name, each replaced as a whole when its configuration differs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// In both, configured differently.
    pub replaced: Vec<String>,
    /// In both, configured the same.
    pub unchanged: Vec<String>,
}

impl Diff {
    /// Whether the reload changes nothing at all (only unchanged objects, no setting).
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
            && self.clusters.is_empty()
            && self.identities.is_empty()
            && self.authorizers.is_empty()
            && self.settings.is_empty()
            && self.restart_required.is_empty()
    }
}

impl ListenerChanges {
    /// Whether no listener is added, removed, rebound or updated.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.rebound.is_empty()
            && self.updated.is_empty()
    }
}

impl Changes {
    /// Whether nothing is added, removed or replaced.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.replaced.is_empty()
    }
}

/// What a reload from `old` to `new` changes.
pub fn diff(old: &Config, new: &Config) -> Diff {
    // Every field named: a setting added to `Config` must be placed in one list or another.
    let Config {
        workers,
        max_connections,
        drain,
        admin,
        metrics,
        access_log,
        tracing,
        reload: Reload {
            watch,
            removed_cluster_connections,
        },
        relay,
        identities,
        authorizers,
        listeners,
        clusters,
    } = new;
    let changed = |settings: &[(&'static str, bool)]| -> Vec<&'static str> {
        settings
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(name, _)| *name)
            .collect()
    };
    Diff {
        listeners: listener_changes(&old.listeners, listeners),
        clusters: changes(&old.clusters, clusters, |c| &c.name),
        identities: changes(&old.identities, identities, |i| &i.name),
        authorizers: changes(&old.authorizers, authorizers, |a| &a.name),
        settings: changed(&[
            ("max_connections", old.max_connections != *max_connections),
            ("drain", old.drain != *drain),
            ("relay.splice", old.relay != *relay),
            (
                "reload.removed_cluster_connections",
                old.reload.removed_cluster_connections != *removed_cluster_connections,
            ),
        ]),
        restart_required: changed(&[
            ("workers", old.workers != *workers),
            ("admin", old.admin != *admin),
            ("metrics", old.metrics != *metrics),
            ("access_log", old.access_log != *access_log),
            ("tracing", old.tracing != *tracing),
            ("reload.watch", old.reload.watch != *watch),
        ]),
    }
}

/// Whether a listener present in both configurations must be bound again rather than keep
/// its listening socket: its address changed (port 0 included: the socket keeps the port it
/// got), or SO_REUSEPORT, which is set before bind(2). Everything else is changed on the
/// listening socket in place: the options accepted connections inherit, and the backlog
/// (listen(2) again updates it).
pub fn needs_rebind(old: &Listener, new: &Listener) -> bool {
    old.address != new.address || old.reuse_port != new.reuse_port
}

fn listener_changes(old: &[Listener], new: &[Listener]) -> ListenerChanges {
    let paired = pair_by_name(old, new, |l| &l.name);
    let mut changes = ListenerChanges {
        added: names(&paired.added, |l| &l.name),
        removed: names(&paired.removed, |l| &l.name),
        ..ListenerChanges::default()
    };
    for (old, new) in paired.both {
        let list = if needs_rebind(old, new) {
            &mut changes.rebound
        } else if old != new {
            &mut changes.updated
        } else {
            &mut changes.unchanged
        };
        list.push(new.name.clone());
    }
    changes
}

fn changes<T: PartialEq>(old: &[T], new: &[T], name: impl Fn(&T) -> &str) -> Changes {
    let paired = pair_by_name(old, new, &name);
    let mut changes = Changes {
        added: names(&paired.added, &name),
        removed: names(&paired.removed, &name),
        ..Changes::default()
    };
    for (old, new) in paired.both {
        let list = if old == new {
            &mut changes.unchanged
        } else {
            &mut changes.replaced
        };
        list.push(name(new).to_string());
    }
    changes
}

/// Objects of two configurations matched by name.
struct Paired<'a, T> {
    /// Only in the new one, in its order.
    added: Vec<&'a T>,
    /// In both (old, new), in the new one's order.
    both: Vec<(&'a T, &'a T)>,
    /// Only in the old one, in its order.
    removed: Vec<&'a T>,
}

fn pair_by_name<'a, T>(old: &'a [T], new: &'a [T], name: impl Fn(&T) -> &str) -> Paired<'a, T> {
    let old_by_name: HashMap<&str, &T> = old.iter().map(|o| (name(o), o)).collect();
    let mut paired = Paired {
        added: Vec::new(),
        both: Vec::new(),
        removed: Vec::new(),
    };
    for n in new {
        match old_by_name.get(name(n)) {
            Some(o) => paired.both.push((*o, n)),
            None => paired.added.push(n),
        }
    }
    let new_names: std::collections::HashSet<&str> = new.iter().map(&name).collect();
    paired.removed = old
        .iter()
        .filter(|o| !new_names.contains(name(o)))
        .collect();
    paired
}

fn names<T>(objects: &[&T], name: impl Fn(&T) -> &str) -> Vec<String> {
    objects.iter().map(|o| name(o).to_string()).collect()
}

#[cfg(test)]
mod tests;
