//! Decisions remembered for a while, keyed on chosen attributes: a burst of reconnects from
//! one client costs one check. Only answers are cached, never failures.

use crate::CheckInput;
use crate::ext_authz::Outcome;
use config::{CacheKey, DecisionCache};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub(crate) struct Cache {
    settings: DecisionCache,
    entries: Mutex<HashMap<String, (Instant, Outcome)>>,
}

impl Cache {
    pub fn new(settings: DecisionCache) -> Cache {
        Cache {
            settings,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn key(&self, input: &CheckInput) -> String {
        let mut key = String::new();
        for k in &self.settings.key {
            let part = match k {
                CacheKey::SourceIp => input.source.map(|s| s.ip().to_string()),
                CacheKey::DestinationPort => input.destination.map(|d| d.port().to_string()),
                CacheKey::SpiffeId => input.peer.as_ref().and_then(|p| p.spiffe_id.clone()),
                CacheKey::Sni => input.sni.clone(),
                CacheKey::Listener => Some(input.listener.clone()),
                CacheKey::Route => Some(input.route.clone()),
            };
            key.push_str(part.as_deref().unwrap_or("-"));
            key.push('\u{1f}');
        }
        // One SSH user's allow is never another's, whatever the configured key says.
        if let Some((user, target)) = &input.ssh {
            key.push_str(user);
            key.push('\u{1f}');
            key.push_str(target.as_deref().unwrap_or("-"));
        }
        if let Some((host, port)) = &input.tunnel {
            key.push('\u{1f}');
            key.push_str(host);
            key.push(':');
            key.push_str(&port.to_string());
        }
        key
    }

    pub fn get(&self, key: &str) -> Option<Outcome> {
        let entries = self.entries.lock().unwrap();
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.settings.ttl)
            .map(|(_, outcome)| outcome.clone())
    }

    pub fn put(&self, key: String, outcome: &Outcome) {
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= self.settings.max_entries {
            let ttl = self.settings.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.settings.max_entries {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), outcome.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the configured key, an allow for one tunnel target never answers a check
    /// for another.
    #[test]
    fn tunnel_targets_are_part_of_every_key() {
        let cache = Cache::new(DecisionCache {
            ttl: std::time::Duration::from_secs(60),
            key: vec![CacheKey::Route],
            max_entries: 10,
        });
        let to = |host: &str, port| CheckInput {
            route: "r".into(),
            tunnel: Some((host.into(), port)),
            ..Default::default()
        };
        let keys = [
            cache.key(&to("10.0.0.1", 1414)),
            cache.key(&to("10.0.0.1", 1415)),
            cache.key(&to("10.0.0.2", 1414)),
            cache.key(&CheckInput {
                route: "r".into(),
                ..Default::default()
            }),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
