//! The diff from small configurations, parsed as the gateway would read them.

use super::*;

/// Two listeners, two clusters, an identity and an authorizer.
const BASE: &str = r#"
workers: 2
identities:
  - name: ca
    bundle: ca.pem
authorizers:
  - name: opa
    address: 127.0.0.1:9191
listeners:
  - name: a
    address: 127.0.0.1:10000
    routes:
      - cluster: x
  - name: b
    address: 127.0.0.1:10001
    routes:
      - cluster: y
clusters:
  - name: x
    endpoints:
      - address: 127.0.0.1:20000
  - name: y
    endpoints:
      - address: 127.0.0.1:20001
"#;

fn parse(yaml: &str) -> Config {
    crate::parse(yaml, "t").unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// The diff from BASE to BASE with `from` replaced by `to` (which must occur).
fn diff_with(from: &str, to: &str) -> Diff {
    assert!(BASE.contains(from), "{from:?} is not in BASE");
    diff(&parse(BASE), &parse(&BASE.replacen(from, to, 1)))
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

#[test]
fn identical_configs_change_nothing() {
    let d = diff(&parse(BASE), &parse(BASE));
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(d.listeners.unchanged, names(&["a", "b"]));
    assert_eq!(d.clusters.unchanged, names(&["x", "y"]));
    assert_eq!(d.identities.unchanged, names(&["ca"]));
    assert_eq!(d.authorizers.unchanged, names(&["opa"]));
}

#[test]
fn a_listener_added() {
    let d = diff_with(
        "clusters:\n",
        "  - name: c\n    address: 127.0.0.1:10002\n    routes:\n      - cluster: x\nclusters:\n",
    );
    assert_eq!(d.listeners.added, names(&["c"]));
    assert_eq!(d.listeners.unchanged, names(&["a", "b"]));
    assert!(d.listeners.removed.is_empty() && d.listeners.rebound.is_empty());
    assert!(d.clusters.is_empty() && !d.is_empty());
}

#[test]
fn a_listener_removed() {
    let d = diff_with(
        "  - name: a\n    address: 127.0.0.1:10000\n    routes:\n      - cluster: x\n",
        "",
    );
    assert_eq!(d.listeners.removed, names(&["a"]));
    assert_eq!(d.listeners.unchanged, names(&["b"]));
    assert!(d.listeners.added.is_empty() && d.listeners.updated.is_empty());
}

#[test]
fn a_new_address_rebinds() {
    let d = diff_with("127.0.0.1:10000", "127.0.0.1:10005");
    assert_eq!(d.listeners.rebound, names(&["a"]));
    assert!(d.listeners.updated.is_empty());
    assert_eq!(d.listeners.unchanged, names(&["b"]));
}

#[test]
fn a_route_change_updates_on_the_same_socket() {
    let d = diff_with("      - cluster: x\n", "      - cluster: y\n");
    assert_eq!(d.listeners.updated, names(&["a"]));
    assert!(d.listeners.rebound.is_empty());
    assert!(d.clusters.is_empty(), "{:?}", d.clusters);
}

#[test]
fn reuse_port_rebinds_other_socket_options_do_not() {
    let listener_a = "    address: 127.0.0.1:10000\n";
    let with = |setting: &str| diff_with(listener_a, &format!("{listener_a}    {setting}\n"));

    // Set before bind(2): only a new socket has it.
    let d = with("reuse_port: true");
    assert_eq!(d.listeners.rebound, names(&["a"]));
    assert!(d.listeners.updated.is_empty());

    // Set on the listening socket in place (listen(2) again for the backlog).
    for setting in ["backlog: 16", "tcp_nodelay: false", "connection_limit: 10"] {
        let d = with(setting);
        assert_eq!(d.listeners.updated, names(&["a"]), "{setting}");
        assert!(d.listeners.rebound.is_empty(), "{setting}");
    }
}

#[test]
fn needs_rebind_is_address_and_reuse_port() {
    let a = &parse(BASE).listeners[0];
    let mut b = a.clone();
    b.backlog += 1;
    b.socket.nodelay = !b.socket.nodelay;
    assert!(!needs_rebind(a, &b));
    b.reuse_port = !b.reuse_port;
    assert!(needs_rebind(a, &b));
    let mut c = a.clone();
    c.address.set_port(0);
    assert!(needs_rebind(a, &c));
}

#[test]
fn an_endpoint_change_replaces_only_its_cluster() {
    let d = diff_with("127.0.0.1:20000", "127.0.0.1:20005");
    assert_eq!(d.clusters.replaced, names(&["x"]));
    assert_eq!(d.clusters.unchanged, names(&["y"]));
    assert!(d.listeners.is_empty(), "{:?}", d.listeners);
    assert_eq!(d.listeners.unchanged, names(&["a", "b"]));
}

#[test]
fn identities_and_authorizers_by_name() {
    let d = diff_with("bundle: ca.pem", "bundle: other.pem");
    assert_eq!(d.identities.replaced, names(&["ca"]));

    let d = diff_with("127.0.0.1:9191", "127.0.0.1:9192");
    assert_eq!(d.authorizers.replaced, names(&["opa"]));

    let d = diff_with("  - name: opa\n", "  - name: opa2\n");
    assert_eq!(d.authorizers.added, names(&["opa2"]));
    assert_eq!(d.authorizers.removed, names(&["opa"]));
}

#[test]
fn workers_take_effect_at_restart() {
    let d = diff_with("workers: 2", "workers: 3");
    assert_eq!(d.restart_required, vec!["workers"]);
    assert!(d.settings.is_empty());
    assert!(d.listeners.is_empty() && d.clusters.is_empty());
    assert!(!d.is_empty());
}

#[test]
fn settings_applied_by_reload() {
    let d = diff_with(
        "workers: 2",
        "workers: 2\nmax_connections: 100\ndrain: { timeout: 5s }",
    );
    assert_eq!(d.settings, vec!["max_connections", "drain"]);
    assert!(d.restart_required.is_empty());

    let d = diff_with(
        "workers: 2",
        "workers: 2\nreload: { watch: true }\nadmin: { enabled: false }",
    );
    assert_eq!(d.restart_required, vec!["admin", "reload.watch"]);
}

#[test]
fn names_keep_config_order() {
    let listener = |name: &str, port: u16| {
        format!(
            "  - name: {name}\n    address: 127.0.0.1:{port}\n    routes:\n      - cluster: x\n"
        )
    };
    let cluster = "clusters:\n  - name: x\n    endpoints:\n      - address: 127.0.0.1:20000\n";
    let config = |listeners: &[(&str, u16)]| {
        let listeners: String = listeners.iter().map(|(n, p)| listener(n, *p)).collect();
        parse(&format!("listeners:\n{listeners}{cluster}"))
    };
    let old = config(&[("d", 1), ("c", 2), ("b", 3), ("a", 4), ("e", 5)]);
    let new = config(&[("z", 9), ("e", 5), ("y", 8), ("a", 4), ("b", 7)]);
    let d = diff(&old, &new);
    assert_eq!(d.listeners.added, names(&["z", "y"]));
    assert_eq!(d.listeners.removed, names(&["d", "c"]), "in the old order");
    assert_eq!(d.listeners.unchanged, names(&["e", "a"]));
    assert_eq!(d.listeners.rebound, names(&["b"]));

    // The same listeners in another order: nothing to do.
    let shuffled = config(&[("e", 5), ("a", 4), ("b", 3), ("c", 2), ("d", 1)]);
    assert!(diff(&old, &shuffled).is_empty());
}

/// The example configurations that parse (they name certificate and key files, which are
/// not opened here).
fn examples() -> Vec<(String, Config)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            crate::parse(&text, &name).ok().map(|c| (name, c))
        })
        .collect()
}

#[test]
fn every_example_against_itself_and_the_others() {
    let examples = examples();
    assert!(examples.len() >= 5, "{} examples parsed", examples.len());
    for (a_name, a) in &examples {
        assert!(diff(a, a).is_empty(), "{a_name}: {:?}", diff(a, a));
        for (b_name, b) in &examples {
            let d = diff(a, b);
            assert_eq!(d.is_empty(), a == b, "{a_name} -> {b_name}: {d:?}");
            accounts_for_every_listener(a, b, &d.listeners);
        }
    }
}

/// Each old listener is in exactly one of removed, rebound, updated, unchanged; each new
/// one in exactly one of added, rebound, updated, unchanged.
fn accounts_for_every_listener(old: &Config, new: &Config, d: &ListenerChanges) {
    let count = |lists: &[&Vec<String>], name: &str| {
        lists
            .iter()
            .flat_map(|l| l.iter())
            .filter(|n| *n == name)
            .count()
    };
    let kept = [&d.rebound, &d.updated, &d.unchanged];
    for l in &old.listeners {
        let lists = [&d.removed, kept[0], kept[1], kept[2]];
        assert_eq!(count(&lists, &l.name), 1, "old {}: {d:?}", l.name);
    }
    for l in &new.listeners {
        let lists = [&d.added, kept[0], kept[1], kept[2]];
        assert_eq!(count(&lists, &l.name), 1, "new {}: {d:?}", l.name);
    }
}

#[test]
fn serializable_for_reports() {
    fn serializable<T: serde::Serialize>(_: &T) {}
    serializable(&diff_with("workers: 2", "workers: 3"));
}
