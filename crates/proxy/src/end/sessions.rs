//! Per-session counts of protocol listeners, for metrics: FIX sessions by route (and, when
//! the listener says so, by CompIDs), MQ connections by route, channel and queue manager.
//! Clients choose CompIDs and channels, so the number of label sets is capped: past the cap,
//! new ones are counted as `other`.

use crate::attributes::{Attributes, Protocol};
use std::collections::HashMap;
use std::sync::Mutex;

/// Label sets kept per listener before new ones go to `other`.
pub const MAX_SERIES: usize = 1000;

/// (route, first label, second label): CompIDs for FIX (empty when not configured),
/// channel and queue manager for MQ.
pub type SessionKey = (String, String, String);

#[derive(Debug, Default)]
pub struct SessionCounts {
    pub fix: Mutex<HashMap<SessionKey, u64>>,
    pub mq: Mutex<HashMap<SessionKey, u64>>,
    /// SSH sessions by route and authentication method.
    pub ssh: Mutex<HashMap<SessionKey, u64>>,
}

impl SessionCounts {
    /// Counts a connection `route` took, by what its protocol said.
    pub(crate) fn count(&self, route: &str, a: &Attributes, fix_comp_ids: bool) {
        let Some(protocol) = a.protocol.as_deref() else {
            return;
        };
        let (map, first, second) = match protocol {
            Protocol::Fix(logon) if fix_comp_ids => (
                &self.fix,
                logon.sender_comp_id.clone(),
                logon.target_comp_id.clone(),
            ),
            Protocol::Fix(_) => (&self.fix, String::new(), String::new()),
            Protocol::Ssh(login) => (&self.ssh, login.method.to_string(), String::new()),
            Protocol::Mq(mq) => (
                &self.mq,
                mq.channel.clone(),
                mq.queue_manager.clone().unwrap_or_default(),
            ),
            // Tunnels are counted by their route like any connection.
            Protocol::Tunnel(_) => return,
        };
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = (route.to_string(), first, second);
        if map.len() >= MAX_SERIES && !map.contains_key(&key) {
            key.1 = "other".into();
            key.2 = "other".into();
        }
        *map.entry(key).or_default() += 1;
    }

    pub fn fix(&self) -> Vec<(SessionKey, u64)> {
        snapshot(&self.fix)
    }

    pub fn mq(&self) -> Vec<(SessionKey, u64)> {
        snapshot(&self.mq)
    }

    pub fn ssh(&self) -> Vec<(SessionKey, u64)> {
        snapshot(&self.ssh)
    }
}

impl SessionCounts {
    /// FIX sessions and MQ connections by route (and CompIDs, channel, queue manager).
    pub(crate) fn report(&self, listener: &str, comp_ids: bool, out: &mut telemetry::Out<'_>) {
        for ((route, sender, target), total) in self.fix() {
            let mut labels = vec![("listener", listener.to_string()), ("route", route)];
            if comp_ids {
                labels.push(("sender_comp_id", sender));
                labels.push(("target_comp_id", target));
            }
            out.counter("causeway_fix_sessions_total", labels, total);
        }
        for ((route, channel, queue_manager), total) in self.mq() {
            let labels = vec![
                ("listener", listener.to_string()),
                ("route", route),
                ("channel", channel),
                ("queue_manager", queue_manager),
            ];
            out.counter("causeway_mq_connections_total", labels, total);
        }
    }
}

fn snapshot(map: &Mutex<HashMap<SessionKey, u64>>) -> Vec<(SessionKey, u64)> {
    let map = map.lock().unwrap_or_else(|e| e.into_inner());
    let mut all: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    all.sort();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(sender: &str) -> Attributes {
        let mut a = crate::attributes::accepted(
            &"l".into(),
            ([127, 0, 0, 1], 1).into(),
            ([127, 0, 0, 1], 2).into(),
        );
        a.protocol = Some(Box::new(Protocol::Fix(protocols::fix::Logon {
            sender_comp_id: sender.into(),
            target_comp_id: "VENUE".into(),
            ..Default::default()
        })));
        *a
    }

    #[test]
    fn by_route_unless_comp_ids_are_asked_for_and_capped() {
        let counts = SessionCounts::default();
        counts.count("r", &fix("A"), false);
        counts.count("r", &fix("B"), false);
        assert_eq!(
            counts.fix(),
            vec![(("r".into(), String::new(), String::new()), 2)]
        );
        let counts = SessionCounts::default();
        for i in 0..MAX_SERIES + 5 {
            counts.count("r", &fix(&format!("C{i}")), true);
        }
        let all = counts.fix();
        assert_eq!(all.len(), MAX_SERIES + 1);
        let other = all.iter().find(|(k, _)| k.1 == "other").unwrap();
        assert_eq!(other.1, 5);
    }
}
