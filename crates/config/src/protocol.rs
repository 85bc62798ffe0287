//! What routes and rules can ask of the protocol a listener reads: the FIX Logon's session
//! fields and the MQ channel. Patterns are case-sensitive globs (`*` any run, `?` one
//! character), so `APP1.SVRCONN` is exact and `APP.*` a prefix.

use serde::{Deserialize, Serialize};

/// What a listener reads from the client before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerProtocol {
    /// Nothing beyond TLS inspection, when asked for.
    #[default]
    Tcp,
    /// The FIX Logon (35=A), inside TLS when a route terminates it.
    Fix,
    /// IBM MQ: TLS (channel from the SNI) or plaintext (channel and queue manager from the
    /// first segment), told apart by the first byte.
    Mq,
    /// SSH, terminated: routed by the user once authenticated (see `ssh`).
    Ssh,
}

/// FIX listener settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FixSettings {
    /// A first message larger than this is refused.
    pub max_logon_size: usize,
    /// Label per-session metrics by SenderCompID/TargetCompID (bounded cardinality is then
    /// the operator's promise); off: by route only.
    pub comp_id_metrics: bool,
}

pub const DEFAULT_MAX_LOGON_SIZE: usize = 8192;

impl Default for FixSettings {
    fn default() -> Self {
        FixSettings {
            max_logon_size: DEFAULT_MAX_LOGON_SIZE,
            comp_id_metrics: false,
        }
    }
}

/// Conditions on a FIX Logon; each list, when not empty, must have a pattern matching.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FixMatch {
    #[serde(default)]
    pub sender_comp_id: Vec<String>,
    #[serde(default)]
    pub target_comp_id: Vec<String>,
    #[serde(default)]
    pub sender_sub_id: Vec<String>,
    #[serde(default)]
    pub target_sub_id: Vec<String>,
    #[serde(default)]
    pub username: Vec<String>,
    #[serde(default)]
    pub begin_string: Vec<String>,
}

impl FixMatch {
    pub fn matches(&self, logon: &protocols::fix::Logon) -> bool {
        any(&self.sender_comp_id, Some(&logon.sender_comp_id))
            && any(&self.target_comp_id, Some(&logon.target_comp_id))
            && any(&self.sender_sub_id, logon.sender_sub_id.as_deref())
            && any(&self.target_sub_id, logon.target_sub_id.as_deref())
            && any(&self.username, logon.username.as_deref())
            && any(&self.begin_string, Some(&logon.begin_string))
    }
}

/// Conditions on an MQ connection's channel and queue manager.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqMatch {
    #[serde(default)]
    pub channel: Vec<String>,
    /// Known from the plaintext first segment only (an MQ SNI names the channel alone).
    #[serde(default)]
    pub queue_manager: Vec<String>,
}

impl MqMatch {
    pub fn matches(&self, channel: Option<&str>, queue_manager: Option<&str>) -> bool {
        any(&self.channel, channel) && any(&self.queue_manager, queue_manager)
    }
}

/// A FIX-aware health check: a Logon with a health-check CompID pair, healthy when the
/// acceptor answers with a Logon or a Logout (either proves a live engine), then logged out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FixHealthCheck {
    pub sender_comp_id: String,
    pub target_comp_id: String,
    #[serde(default = "default_begin_string")]
    pub begin_string: String,
}

fn default_begin_string() -> String {
    "FIX.4.4".into()
}

/// No patterns: anything (even nothing) matches; otherwise the value must match one.
fn any(patterns: &[String], value: Option<&str>) -> bool {
    patterns.is_empty() || value.is_some_and(|v| patterns.iter().any(|p| glob_matches(p, v)))
}

/// `*` matches any run of characters, `?` one; everything else itself, case-sensitively.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("APP1.SVRCONN", "APP1.SVRCONN"));
        assert!(!glob_matches("APP1.SVRCONN", "app1.svrconn"));
        assert!(glob_matches("APP*", "APP1.SVRCONN"));
        assert!(glob_matches("*.SVRCONN", "APP1.SVRCONN"));
        assert!(glob_matches("A?P*N", "APP1.SVRCONN"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("APP?", "APP"));
        assert!(glob_matches("*A*B*", "xxAyyBzz"));
        assert!(!glob_matches("*A*B", "xxAyyBzz"));
    }

    #[test]
    fn fix_conditions() {
        let logon = protocols::fix::Logon {
            begin_string: "FIX.4.4".into(),
            sender_comp_id: "CLIENT1".into(),
            target_comp_id: "VENUE1".into(),
            ..Default::default()
        };
        let m = FixMatch {
            target_comp_id: vec!["VENUE1".into()],
            sender_comp_id: vec!["CLIENT*".into()],
            ..Default::default()
        };
        assert!(m.matches(&logon));
        let sub = FixMatch {
            sender_sub_id: vec!["DESK1".into()],
            ..Default::default()
        };
        assert!(!sub.matches(&logon), "no sub-ID, no match");
    }
}
