//! Decisions remembered for a while, keyed on chosen attributes: a burst of reconnects from
//! one client costs one check. Only answers are cached, never failures.

use crate::CheckInput;
use crate::ext_authz::Outcome;
use config::{CacheKey, DecisionCache};
use sha2::{Digest, Sha256};
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

    /// The configured parts, then a digest of everything that names who the client is and
    /// where it goes: one identity's answer (and the routing it carries) is never another's.
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
        for byte in identity_digest(input) {
            key.push_str(&format!("{byte:02x}"));
        }
        key
    }

    /// Forgets every decision (a reload: rules, identities or policy may have changed).
    pub fn clear(&self) {
        self.entries.lock().unwrap().clear();
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

/// SHA-256 over every identity- and destination-bearing attribute, each length-prefixed (no
/// two inputs share an encoding): listener, route, SNI, the peer certificate's identity, the
/// FIX session fields, MQ channel and queue manager, SSH login, tunnel target, and every
/// extension the authorizer is sent (PROXY TLVs included).
fn identity_digest(input: &CheckInput) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut feed = |part: Option<&str>| match part {
        None => hash.update([0u8]),
        Some(text) => {
            hash.update([1u8]);
            hash.update((text.len() as u64).to_be_bytes());
            hash.update(text.as_bytes());
        }
    };
    feed(Some(&input.listener));
    feed(Some(&input.route));
    feed(input.sni.as_deref());
    let peer = input.peer.as_ref();
    feed(peer.map(|p| p.subject.as_str()));
    feed(peer.and_then(|p| p.spiffe_id.as_deref()));
    let dns_names = peer.map_or(&[][..], |p| &p.dns_names[..]);
    feed(Some(&dns_names.len().to_string()));
    for name in dns_names {
        feed(Some(name));
    }
    feed(input.peer_certificate_pem.as_deref());
    let fix = input.fix.as_ref();
    feed(fix.map(|f| f.begin_string.as_str()));
    feed(fix.map(|f| f.sender_comp_id.as_str()));
    feed(fix.map(|f| f.target_comp_id.as_str()));
    feed(fix.and_then(|f| f.sender_sub_id.as_deref()));
    feed(fix.and_then(|f| f.target_sub_id.as_deref()));
    feed(fix.and_then(|f| f.username.as_deref()));
    feed(input.mq.as_ref().map(|(channel, _)| channel.as_str()));
    feed(input.mq.as_ref().and_then(|(_, qm)| qm.as_deref()));
    feed(input.ssh.as_ref().map(|(user, _)| user.as_str()));
    feed(input.ssh.as_ref().and_then(|(_, target)| target.as_deref()));
    let port = input.tunnel.as_ref().map(|(_, port)| port.to_string());
    feed(input.tunnel.as_ref().map(|(host, _)| host.as_str()));
    feed(port.as_deref());
    feed(Some(&input.extensions.len().to_string()));
    for (name, value) in &input.extensions {
        feed(Some(name));
        feed(Some(value));
    }
    hash.finalize().into()
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

    /// Two clients differing only in who they are never share a key, and a check that
    /// carries a password is never cacheable.
    #[test]
    fn identities_are_part_of_every_key() {
        let cache = Cache::new(DecisionCache {
            ttl: std::time::Duration::from_secs(60),
            key: vec![CacheKey::SpiffeId],
            max_entries: 10,
        });
        let dns = |name: &str| CheckInput {
            peer: Some(tls::PeerIdentity {
                dns_names: vec![name.into()],
                subject: "CN=x".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_ne!(cache.key(&dns("a.test")), cache.key(&dns("b.test")));
        let fix = |sender: &str| CheckInput {
            fix: Some(protocols::fix::Logon {
                sender_comp_id: sender.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_ne!(cache.key(&fix("A")), cache.key(&fix("B")));
        let mut secret = fix("A");
        assert!(secret.cacheable());
        secret.extensions.push(("fix_password".into(), "p".into()));
        assert!(!secret.cacheable());
    }
}
