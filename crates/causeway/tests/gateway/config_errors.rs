//! Bad configurations are refused with `FILE:LINE:COL: what is wrong`.

fn error_of(yaml: &str) -> String {
    match config::parse(yaml, "bad.yaml") {
        Ok(_) => panic!("accepted a bad config:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

const GOOD: &str = r#"
listeners:
  - name: l
    address: 127.0.0.1:10000
    routes:
      - cluster: c
clusters:
  - name: c
    endpoints:
      - address: 127.0.0.1:10001
"#;

#[test]
fn the_reference_config_is_valid() {
    let config = config::parse(GOOD, "good.yaml").unwrap();
    assert_eq!(config.listeners[0].routes[0].cluster, "c");
    assert!(config.listeners[0].socket.nodelay);
    assert!(config.listeners[0].socket.keepalive.is_some());
    assert_eq!(
        config.listeners[0].routes[0].idle_timeout,
        Some(std::time::Duration::from_secs(3600)),
        "an hour's idle timeout by default"
    );
}

#[test]
fn yaml_syntax_error() {
    let e = error_of("listeners: [\n  { name: l\n");
    assert!(e.starts_with("bad.yaml:2:3: unclosed bracket"), "{e}");
}

#[test]
fn unknown_field() {
    let e = error_of(&GOOD.replace(
        "    address: 127.0.0.1:10000",
        "    address: 127.0.0.1:10000\n    adress: oops",
    ));
    assert!(e.starts_with("bad.yaml:5:5: unknown field `adress`"), "{e}");
}

#[test]
fn bad_values() {
    let e = error_of(&GOOD.replace(
        "      - cluster: c",
        "      - cluster: c\n        idle_timeout: 10",
    ));
    assert!(
        e.starts_with("bad.yaml:7:23:") && e.contains("needs a unit"),
        "{e}"
    );

    let e = error_of(&GOOD.replace("127.0.0.1:10000", "localhost"));
    assert!(
        e.starts_with("bad.yaml:4:14:") && e.contains("must be IP:PORT"),
        "{e}"
    );

    let e = error_of(&GOOD.replace(
        "    endpoints:",
        "    load_balancing: fastest\n    endpoints:",
    ));
    assert!(
        e.starts_with("bad.yaml:9:21: unknown variant `fastest`"),
        "{e}"
    );

    let e = error_of(&GOOD.replace("    endpoints:", "    connect_attempts: 0\n    endpoints:"));
    assert!(
        e.starts_with("bad.yaml:9:23: connect_attempts must be at least 1"),
        "{e}"
    );

    let e = error_of(&GOOD.replace("127.0.0.1:10001", "127.0.0.1:99999"));
    assert!(
        e.starts_with("bad.yaml:10:18:") && e.contains("HOST:PORT"),
        "{e}"
    );
}

#[test]
fn bad_references_and_duplicates_are_all_reported() {
    let yaml = r#"
listeners:
  - name: l
    address: 127.0.0.1:10000
    routes:
      - cluster: missing
      - cluster: c
  - name: l
    address: 127.0.0.1:10000
    routes:
      - cluster: c
clusters:
  - name: c
    endpoints: []
"#;
    let e = error_of(yaml);
    let lines: Vec<&str> = e.lines().collect();
    assert!(
        lines.contains(
            &"bad.yaml:6:18: route `route-0` names cluster `missing`, which is not defined"
        ),
        "{e}"
    );
    assert!(lines.contains(&"bad.yaml:7:18: route `route-1` can never match: route `route-0` before it matches every connection"), "{e}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bad.yaml:8:11: listener `l` is defined twice")),
        "{e}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bad.yaml:9:14: listeners `l` and `l` both bind")),
        "{e}"
    );
    assert!(
        lines.contains(&"bad.yaml:14:16: a cluster needs at least one endpoint"),
        "{e}"
    );
}

#[test]
fn missing_required_fields() {
    let e = error_of("clusters: []\n");
    assert!(e.contains("listeners"), "{e}");
    let e = error_of(&GOOD.replace("      - cluster: c\n", "      - {}\n"));
    assert!(e.contains("bad.yaml:6:") && e.contains("cluster"), "{e}");
}

#[test]
fn drain_settings_must_fit_their_window() {
    let e = error_of(&format!("drain: {{ timeout: 5s, delay: 5s }}\n{GOOD}"));
    assert!(
        e.starts_with("bad.yaml:1:30: drain.delay must be shorter than drain.timeout"),
        "{e}"
    );
    let e = error_of(&format!(
        "drain: {{ timeout: 5s, delay: 2s, spread: 4s }}\n{GOOD}"
    ));
    assert!(e.starts_with("bad.yaml:1:42: drain.spread must fit"), "{e}");
    let ok = config::parse(
        &format!("drain: {{ timeout: 5s, delay: 1s, spread: 4s }}\n{GOOD}"),
        "ok",
    )
    .unwrap();
    assert_eq!(ok.drain.spread, std::time::Duration::from_secs(4));
}

#[test]
fn admin_api_stays_on_loopback_unless_a_token_guards_it() {
    let e = error_of(&format!("admin: {{ address: 0.0.0.0:9901 }}\n{GOOD}"));
    assert!(
        e.starts_with(
            "bad.yaml:1:19: the admin API on 0.0.0.0:9901 would be reachable from the network"
        ),
        "{e}"
    );
    let e = error_of(&format!(
        "admin: {{ address: 0.0.0.0:9901, allow_non_loopback: true }}\n{GOOD}"
    ));
    assert!(e.contains("admin.allow_non_loopback is gone"), "{e}");
    let e = error_of(&format!(
        "admin: {{ address: \"unix:admin.sock\" }}\n{GOOD}"
    ));
    assert!(e.contains("a unix socket needs an absolute path"), "{e}");
    let e = error_of(&format!("admin: {{ probes: pod-ip }}\n{GOOD}"));
    assert!(
        e.starts_with("bad.yaml:1:18: admin.probes `pod-ip` must be IP:PORT"),
        "{e}"
    );
    let guarded = config::parse(
        &format!(
            "admin: {{ address: 0.0.0.0:9901, token_file: /etc/causeway/token, probes: 0.0.0.0:9902 }}\n{GOOD}"
        ),
        "ok",
    )
    .unwrap()
    .admin
    .unwrap();
    assert_eq!(guarded.address.to_string(), "0.0.0.0:9901");
    assert_eq!(guarded.probes, Some("0.0.0.0:9902".parse().unwrap()));
    let default = config::parse(GOOD, "ok").unwrap();
    assert_eq!(default.admin.unwrap().address.to_string(), "127.0.0.1:9901");
    let off = config::parse(&format!("admin: {{ enabled: false }}\n{GOOD}"), "ok").unwrap();
    assert!(off.admin.is_none());
    let e = error_of(&format!(
        "admin: {{ enabled: false, probes: 0.0.0.0:9902 }}\n{GOOD}"
    ));
    assert!(
        e.contains("admin.probes is set but admin.enabled is false"),
        "{e}"
    );
}

#[test]
fn tls_routes_need_the_tls_inspector() {
    let e = error_of(&GOOD.replace(
        "      - cluster: c",
        "      - match: { sni: [a.example] }\n        cluster: c",
    ));
    assert!(
        e.starts_with("bad.yaml:3:11: route `route-0` matches on TLS"),
        "{e}"
    );
    let e = error_of(&GOOD.replace(
        "      - cluster: c",
        "      - match: { tls: false, sni: [a.example] }\n        cluster: c",
    ));
    assert!(e.contains("cannot match sni or alpn"), "{e}");
    let e = error_of(&GOOD.replace(
        "      - cluster: c",
        "      - match: { sni: [\"bad name\"] }\n        cluster: c",
    ));
    assert!(e.contains("must be a host name"), "{e}");
    let ok = config::parse(
        &GOOD
            .replace("    routes:", "    inspect: { tls: true }\n    routes:")
            .replace(
                "      - cluster: c",
                "      - match: { sni: [\"*.Chl.mq.ibm.com\"] }\n        cluster: c",
            ),
        "ok",
    )
    .unwrap();
    assert_eq!(ok.listeners[0].routes[0].matcher.sni, ["*.chl.mq.ibm.com"]);
    assert_eq!(
        ok.listeners[0].inspect.unwrap().timeout,
        std::time::Duration::from_secs(5)
    );
}

#[test]
fn tls_settings_are_checked_where_they_are_written() {
    let e = error_of(
        r#"identities:
  - name: half
    cert: /etc/x.pem
  - name: spire
    spire: { socket: relative.sock }
  - name: empty
listeners:
  - name: l
    address: 127.0.0.1:10000
    routes:
      - cluster: c
        terminate:
          identities: [missing]
          client_certificate: required
          min_version: "1.1"
          allowed_clients: { spiffe_ids: [causeway.test/client] }
clusters:
  - name: c
    endpoints: [{ address: 127.0.0.1:10001 }]
    tls: { trust: nowhere }
"#,
    );
    let expected = [
        "bad.yaml:2:11: cert and key go together",
        "bad.yaml:5:22: spire.socket must be an absolute path",
        "bad.yaml:6:11: an identity needs cert and key",
        "bad.yaml:13:11: verifying client certificates needs `trust`",
        "bad.yaml:13:24: terminate.identities names identity `missing`, which is not defined",
        "bad.yaml:15:24: min_version `1.1`",
        "bad.yaml:16:43: `causeway.test/client` is not a SPIFFE ID",
        "bad.yaml:20:10: say how the server is verified",
        "bad.yaml:20:19: tls.trust names identity `nowhere`",
    ];
    for line in expected {
        assert!(e.contains(line), "missing {line:?} in:\n{e}");
    }
    assert_eq!(e.lines().count(), expected.len(), "{e}");
}

#[test]
fn an_unknown_tls_field_is_an_error() {
    let e = error_of(
        r#"identities:
  - { name: i, cert: a.pem, key: b.pem, password: x }
listeners: []
"#,
    );
    assert!(
        e.starts_with("bad.yaml:2:41: unknown field `password`"),
        "{e}"
    );
}

#[test]
fn tunnel_settings_are_checked() {
    let e = error_of(
        r#"listeners:
  - name: l
    address: 127.0.0.1:10000
    routes:
      - connect: { allowed_cidrs: [10.0.0.0/8] }
        cluster: c
clusters:
  - name: c
    endpoints: [{ address: 127.0.0.1:10001 }]
    tunnel:
      authority: "{sni}:{port}"
      headers: [{ name: "bad header", value: x }]
      use_post: true
      protocol: http1
"#,
    );
    for expected in [
        "bad.yaml:5:18: connect needs allowed_ports",
        "bad.yaml:11:7: tunnel.use_post needs protocol: http2",
        "bad.yaml:11:18: `{port}` is not a known placeholder",
        "bad.yaml:12:17: header name `bad header`",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
}

#[test]
fn protocol_settings_are_checked() {
    let e = error_of(
        r#"listeners:
  - name: l
    address: 127.0.0.1:10000
    fix: { max_logon_size: 10 }
    routes:
      - match: { fix: { target_comp_id: [VENUE1] } }
        cluster: c
      - match: { mq: { channel: [APP1.*] } }
        cluster: c
clusters:
  - { name: c, endpoints: [{ address: 127.0.0.1:10001 }] }
"#,
    );
    for expected in [
        "bad.yaml:4:10: `fix` settings need `protocol: fix`",
        "bad.yaml:4:28: fix.max_logon_size must be at least 64",
        "matches on fix but the listener does not read it: add `protocol: fix`",
        "matches on mq but the listener does not read it: add `protocol: mq`",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
    let typo = error_of(
        r#"listeners:
  - name: l
    address: 127.0.0.1:10000
    protocol: mq
    routes:
      - match: { mq: { channel: [APP1.*], queue_managr: [QM1] } }
        cluster: c
clusters:
  - { name: c, endpoints: [{ address: 127.0.0.1:10001 }] }
"#,
    );
    assert!(
        typo.contains("bad.yaml:6:43: unknown field `queue_managr`"),
        "{typo}"
    );
}

#[test]
fn ssh_settings_are_checked() {
    let e = error_of(
        r#"listeners:
  - name: s
    address: 127.0.0.1:10022
    protocol: ssh
    ssh:
      host_keys: []
      max_auth_attempts: 0
      users:
        - { name: alice }
        - { name: bob, password_hash: "hunter2" }
        - { name: bob, password_hash: "$2b$12$abcdefghijklmnopqrstuv" }
    routes:
      - name: no-credentials
        match: { ssh: { user: [alice] } }
        cluster: plain
      - name: both
        cluster: pinned
        ssh: { private_key: k, password_file: p }
  - name: t
    address: 127.0.0.1:10023
    ssh: { host_keys: [k] }
    routes:
      - match: { ssh: { user: [alice] } }
        cluster: plain
        ssh: { private_key: k }
clusters:
  - { name: plain, endpoints: [{ address: 127.0.0.1:10122 }] }
  - name: pinned
    endpoints: [{ address: 127.0.0.1:10122 }]
    ssh: { host_key_fingerprints: ["MD5:aa:bb"] }
  - name: unpinned
    endpoints: [{ address: 127.0.0.1:10122 }]
    ssh: {}
"#,
    );
    for expected in [
        "bad.yaml:6:18: ssh.host_keys: at least one key file",
        "bad.yaml:7:26: ssh.max_auth_attempts must be at least 1",
        "ssh user `alice` needs `authorized_keys` or `password_hash`",
        "bad.yaml:10:39: password_hash must be an argon2",
        "ssh user `bob` is listed twice",
        "bad.yaml:15:18: route `no-credentials` of an SSH listener needs `ssh: { private_key: ... }`",
        "route `no-credentials` sends SSH sessions to cluster `plain`, which does not say how to verify its host keys",
        "route `both`: ssh takes `private_key` or `password_file`, not both",
        "bad.yaml:21:10: `ssh` settings need `protocol: ssh`",
        "matches on ssh but the listener does not read it: add `protocol: ssh`",
        "route `route-0` has `ssh` settings but the listener is not `protocol: ssh`",
        "host key fingerprints are `SHA256:…`",
        "ssh: give `known_hosts`, `host_keys` or `host_key_fingerprints`",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
    let typo = error_of(
        r#"listeners:
  - name: s
    address: 127.0.0.1:10022
    protocol: ssh
    ssh: { host_keys: [k], users: [{ name: a, authorized_key: f }] }
    routes: [{ cluster: c, ssh: { private_key: k } }]
clusters:
  - { name: c, endpoints: [{ address: 127.0.0.1:1 }], ssh: { host_keys: [h] } }
"#,
    );
    assert!(
        typo.contains("bad.yaml:5:47: unknown field `authorized_key`"),
        "{typo}"
    );
}
