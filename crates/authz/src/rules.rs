//! Built-in rules: allow or deny on what is known of the connection, no service needed.

use crate::CheckInput;
use config::{Rule, RuleAction};

/// The action of the first rule whose conditions all hold; `None` when none does.
pub fn evaluate(rules: &[Rule], input: &CheckInput) -> Option<RuleAction> {
    rules.iter().find(|r| matches(r, input)).map(|r| r.action)
}

fn matches(rule: &Rule, input: &CheckInput) -> bool {
    let source = input.source.map(|s| canonical(s.ip()));
    (rule.source_cidrs.is_empty()
        || source.is_some_and(|ip| rule.source_cidrs.iter().any(|c| c.contains(&ip))))
        && rule.peers.as_ref().is_none_or(|allowed| {
            allowed.allows(input.peer.as_ref().and_then(|p| p.spiffe_id.as_deref()))
        })
        && (rule.sni.is_empty()
            || input
                .sni
                .as_deref()
                .is_some_and(|sni| rule.sni.iter().any(|p| config::name_matches(p, sni))))
        && rule
            .fix
            .as_ref()
            .is_none_or(|f| input.fix.as_ref().is_some_and(|logon| f.matches(logon)))
        && rule.mq.as_ref().is_none_or(|m| {
            input
                .mq
                .as_ref()
                .is_some_and(|(channel, qm)| m.matches(Some(channel), qm.as_deref()))
        })
        && rule.ssh.as_ref().is_none_or(|m| {
            input
                .ssh
                .as_ref()
                .is_some_and(|(user, target)| m.matches(user, target.as_deref()))
        })
}

fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: RuleAction, cidrs: &[&str], domains: &[&str], sni: &[&str]) -> Rule {
        Rule {
            action,
            source_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            peers: (!domains.is_empty()).then(|| config::AllowedPeers {
                trust_domains: domains.iter().map(|d| d.to_string()).collect(),
                ..Default::default()
            }),
            sni: sni.iter().map(|s| s.to_string()).collect(),
            fix: None,
            mq: None,
            ssh: None,
        }
    }

    #[test]
    fn first_matching_rule_decides_and_every_condition_must_hold() {
        let rules = [
            rule(RuleAction::Deny, &["192.0.2.0/24"], &[], &[]),
            rule(
                RuleAction::Allow,
                &[],
                &["partner.example"],
                &["*.mq.example"],
            ),
        ];
        let mut input = CheckInput {
            source: Some("192.0.2.9:4000".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(evaluate(&rules, &input), Some(RuleAction::Deny));
        input.source = Some("[::ffff:198.51.100.1]:4000".parse().unwrap());
        assert_eq!(evaluate(&rules, &input), None, "no identity, no sni");
        input.peer = Some(tls::PeerIdentity {
            spiffe_id: Some("spiffe://partner.example/app".into()),
            ..Default::default()
        });
        assert_eq!(evaluate(&rules, &input), None, "identity but no sni");
        input.sni = Some("qm1.mq.example".into());
        assert_eq!(evaluate(&rules, &input), Some(RuleAction::Allow));
        input.source = Some("192.0.2.1:1".parse().unwrap());
        assert_eq!(evaluate(&rules, &input), Some(RuleAction::Deny), "in order");
    }
}
