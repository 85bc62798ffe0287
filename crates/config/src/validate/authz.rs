//! Authorization: external authorizers (ext_authz services) and the routes' rules.

use super::names::{Names, check_name, is_host_name, is_host_port, sni_pattern};
use super::tls::allowed_peers;
use super::values::port_ranges;
use crate::problems::Problems;
use crate::{model, raw};
use serde_saphyr::Spanned;
use std::time::Duration;

pub const DEFAULT_AUTHZ_TIMEOUT: Duration = Duration::from_millis(500);
pub const DEFAULT_CACHE_ENTRIES: usize = 100_000;

/// Every authorizer, its name recorded in `names` for the routes that refer to it.
pub(super) fn authorizers(
    problems: &mut Problems,
    raw: Vec<raw::Authorizer>,
    names: &mut Names,
) -> Vec<model::Authorizer> {
    raw.into_iter()
        .map(|a| {
            check_name(problems, &a.name, "authorizer", &mut names.authorizers);
            authorizer(problems, a)
        })
        .collect()
}

fn authorizer(problems: &mut Problems, a: raw::Authorizer) -> model::Authorizer {
    if !is_host_port(&a.address.value) {
        problems.add(
            a.address.referenced,
            format!("authorizer address `{}` must be HOST:PORT", a.address.value),
        );
    }
    let cache = a.cache.map(|c| decision_cache(problems, c));
    let tls = a.tls.map(|t| authorizer_tls(problems, t));
    model::Authorizer {
        name: a.name.value,
        address: a.address.value,
        timeout: a.timeout.map_or(DEFAULT_AUTHZ_TIMEOUT, |t| {
            problems.positive(&t, "authorizer timeout")
        }),
        failure_mode: match a.failure_mode {
            None | Some(raw::FailureMode::Deny) => model::FailureMode::Deny,
            Some(raw::FailureMode::Allow) => model::FailureMode::Allow,
        },
        include_peer_certificate: a.include_peer_certificate,
        include_fix_password: a.include_fix_password,
        cache,
        tls,
    }
}

fn authorizer_tls(problems: &mut Problems, t: Spanned<raw::AuthorizerTls>) -> model::AuthorizerTls {
    let (at, t) = (t.referenced, t.value);
    if t.certificate.is_some() != t.key.is_some() {
        problems.add(
            at,
            "tls.certificate and tls.key go together: give both or neither",
        );
    }
    if let Some(name) = &t.server_name
        && !is_host_name(&name.value)
        && name.value.parse::<std::net::IpAddr>().is_err()
    {
        let message = format!("`{}` is not a host name or IP address", name.value);
        problems.add(name.referenced, message);
    }
    let path = |p: Option<Spanned<String>>| p.map(|p| std::path::PathBuf::from(p.value));
    model::AuthorizerTls {
        ca: t.ca.value.into(),
        certificate: path(t.certificate),
        key: path(t.key),
        server_name: t.server_name.map(|n| n.value),
    }
}

fn decision_cache(problems: &mut Problems, c: Spanned<raw::DecisionCache>) -> model::DecisionCache {
    if c.value.key.value.is_empty() {
        problems.add(
            c.value.key.referenced,
            "cache key is empty: name what a decision is remembered for (e.g. [source_ip, route]); \
             the client's identity is always part of it",
        );
    }
    let key = c
        .value
        .key
        .value
        .iter()
        .filter_map(|k| {
            let found = model::CacheKey::ALL.iter().find(|(n, _)| n == k);
            if found.is_none() {
                let known: Vec<_> = model::CacheKey::ALL.iter().map(|(n, _)| *n).collect();
                problems.add(
                    c.value.key.referenced,
                    format!("cache key `{k}`: use {}", known.join(", ")),
                );
            }
            found.map(|(_, k)| *k)
        })
        .collect();
    model::DecisionCache {
        ttl: problems.positive(&c.value.ttl, "cache.ttl"),
        key,
        max_entries: c.value.max_entries.map_or(DEFAULT_CACHE_ENTRIES, |m| {
            problems.at_least(&m, 1, "cache.max_entries")
        }),
    }
}

fn action(a: raw::RuleAction) -> model::RuleAction {
    match a {
        raw::RuleAction::Allow => model::RuleAction::Allow,
        raw::RuleAction::Deny => model::RuleAction::Deny,
    }
}

/// A route's authorization: its rules, and the authorizer asked when none matched.
pub(super) fn authorization(
    problems: &mut Problems,
    a: Spanned<raw::Authorization>,
    names: &Names,
) -> model::Authorization {
    let at = a.referenced;
    let a = a.value;
    if let Some(name) = &a.ext_authz
        && !names.authorizers.contains_key(&name.value)
    {
        problems.add(
            name.referenced,
            format!(
                "ext_authz names authorizer `{}`, which is not defined under `authorizers`",
                name.value
            ),
        );
    }
    if a.default.is_some() && a.ext_authz.is_some() {
        problems.add(
            at,
            "`default` is for rules alone: with ext_authz, the authorizer decides what no rule matched",
        );
    }
    // What no rule matched is never let in by omission.
    if a.default.is_none() && a.ext_authz.is_none() {
        problems.add(
            at,
            "authorization without ext_authz needs `default: deny` (or `allow`): the decision when no rule matches",
        );
    }
    let rules = a.rules.into_iter().map(|r| rule(problems, r)).collect();
    let dynamic_targets = a.dynamic_targets.map(|d| model::DynamicTargets {
        cidrs: d.value.cidrs.into_iter().map(|c| c.trunc()).collect(),
        ports: port_ranges(problems, &d.value.ports),
    });
    model::Authorization {
        rules,
        ext_authz: a.ext_authz.map(|n| n.value),
        default: a.default.map_or(model::RuleAction::Deny, action),
        reauthorize_every: a
            .reauthorize_every
            .map(|d| problems.positive(&d, "reauthorize_every")),
        dynamic_targets,
    }
}

fn rule(problems: &mut Problems, r: Spanned<raw::Rule>) -> model::Rule {
    let r = r.value;
    let peers = raw::AllowedPeers {
        spiffe_ids: r.spiffe_ids,
        trust_domains: r.trust_domains,
        spiffe_id_prefixes: r.spiffe_id_prefixes,
    };
    let any_peer = !(peers.spiffe_ids.is_empty()
        && peers.trust_domains.is_empty()
        && peers.spiffe_id_prefixes.is_empty());
    model::Rule {
        action: action(r.action),
        source_cidrs: r.source_cidrs.into_iter().map(|c| c.trunc()).collect(),
        peers: any_peer.then(|| allowed_peers(problems, peers)),
        sni: r.sni.iter().map(|n| sni_pattern(problems, n)).collect(),
        fix: r.fix.map(|f| f.value),
        mq: r.mq.map(|m| m.value),
        ssh: r.ssh.map(|m| m.value),
    }
}
