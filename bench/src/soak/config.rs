//! The gateway's configuration for a soak: one listener per kind of connection, two
//! variants the reloader alternates between (each reload changes routes, an authorizer, and
//! adds or removes a listener and a cluster, so `config::diff` has work every time).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where everything listens; the gateway's ports are picked free before it starts.
pub struct Addresses {
    pub admin: SocketAddr,
    pub plain: SocketAddr,
    pub tls: SocketAddr,
    /// The tunnel's edge (clients connect here) and its terminator (the same process).
    pub edge: SocketAddr,
    pub terminator: SocketAddr,
    pub fix: SocketAddr,
    pub ssh: SocketAddr,
    /// The listener only variant B has.
    pub spare: SocketAddr,
    pub echo: SocketAddr,
    pub venue: SocketAddr,
    pub sshd: SocketAddr,
    pub authorizer: SocketAddr,
}

/// Files the configuration names.
pub struct Files {
    /// The TLS kind's certificate and key (bench's PKI).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// examples/certs (the tunnel's mTLS) and examples/keys (SSH).
    pub certs: PathBuf,
    pub keys: PathBuf,
    /// Private keys copied with mode 0600: the gateway's host key and its upstream key.
    pub host_key: PathBuf,
    pub upstream_key: PathBuf,
    pub access_log: PathBuf,
}

/// A free port on 127.0.0.1 (bound and released: nothing else here takes ports).
pub fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address")
}

/// Variant `b` (false: A) of the configuration. What a reload changes: the routes' idle
/// timeout, the authorizers' timeout (the gateway rebuilds their clients), and a listener
/// and a cluster that exist in B only.
pub fn yaml(a: &Addresses, f: &Files, b: bool) -> String {
    let idle = if b { "59m" } else { "1h" };
    let authz_timeout = if b { "250ms" } else { "200ms" };
    let mut text = head(a, f, if b { "B" } else { "A" }, authz_timeout);
    text.push_str(&listeners(a, f, idle));
    if b {
        text.push_str(&format!(
            "  - name: spare\n    address: \"{}\"\n    routes: [{{ name: spare, cluster: spare }}]\n",
            a.spare
        ));
    }
    text.push_str(&clusters(a, f));
    if b {
        text.push_str(&format!(
            "  - {{ name: spare, endpoints: [{{ address: \"{}\" }}] }}\n",
            a.echo
        ));
    }
    text
}

fn head(a: &Addresses, f: &Files, variant: &str, authz_timeout: &str) -> String {
    let certs = f.certs.display();
    format!(
        r#"# Written by `bench soak`; variant {variant}.
workers: 2
admin: {{ address: "{admin}" }}
access_log: {{ path: {access_log} }}
identities:
  - {{ name: soak, cert: {cert}, key: {key} }}
  - {{ name: terminator, cert: {certs}/terminator.pem, key: {certs}/terminator-key.pem }}
  - {{ name: edge, cert: {certs}/client-allowed.pem, key: {certs}/client-allowed-key.pem }}
  - {{ name: test-ca, bundle: {certs}/ca.pem }}
authorizers:
  - {{ name: open, address: "{authorizer}", timeout: {authz_timeout}, failure_mode: allow }}
  - {{ name: closed, address: "{authorizer}", timeout: {authz_timeout}, failure_mode: deny }}
"#,
        admin = a.admin,
        access_log = f.access_log.display(),
        cert = f.cert.display(),
        key = f.key.display(),
        authorizer = a.authorizer,
    )
}

/// One listener per kind; the edge and the terminator of the tunnel are both here.
fn listeners(a: &Addresses, f: &Files, idle: &str) -> String {
    format!(
        r#"listeners:
  - name: plain
    address: "{plain}"
    routes:
      - {{ name: plain, authorization: {{ ext_authz: open }}, cluster: echo, idle_timeout: {idle} }}
  - name: tls
    address: "{tls}"
    routes:
      - name: tls
        terminate: {{ identities: [soak] }}
        authorization: {{ ext_authz: closed }}
        cluster: echo
        idle_timeout: {idle}
  - name: edge
    address: "{edge}"
    routes: [{{ name: edge, cluster: tunnel, idle_timeout: {idle} }}]
  - name: terminator
    address: "{terminator}"
    routes:
      - name: tunnels
        terminate: {{ identities: [terminator], client_certificate: required, trust: test-ca, alpn: [h2] }}
        connect: {{ allowed_cidrs: [127.0.0.1/32], allowed_ports: ["{echo_port}"] }}
        cluster: echo
        idle_timeout: {idle}
  - name: fix
    address: "{fix}"
    protocol: fix
    routes:
      - name: venue
        match: {{ fix: {{ target_comp_id: [VENUE] }} }}
        authorization:
          rules: [{{ action: allow, fix: {{ sender_comp_id: [CLIENT1] }} }}]
          default: deny
        cluster: venue
        idle_timeout: {idle}
  - name: sftp
    address: "{ssh}"
    protocol: ssh
    ssh:
      host_keys: [{host_key}]
      users: [{{ name: alice, authorized_keys: {keys}/alice.pub }}]
    routes:
      - name: sftp
        match: {{ ssh: {{ user: [alice] }} }}
        cluster: sftp
        idle_timeout: {idle}
        ssh:
          private_key: {upstream_key}
          allow: {{ sftp: true, exec: false, shell: false, port_forwarding: false }}
"#,
        plain = a.plain,
        tls = a.tls,
        edge = a.edge,
        terminator = a.terminator,
        echo_port = a.echo.port(),
        fix = a.fix,
        ssh = a.ssh,
        host_key = f.host_key.display(),
        keys = f.keys.display(),
        upstream_key = f.upstream_key.display(),
    )
}

fn clusters(a: &Addresses, f: &Files) -> String {
    format!(
        r#"clusters:
  - {{ name: echo, endpoints: [{{ address: "{echo}" }}] }}
  - name: tunnel
    endpoints: [{{ address: "{terminator}" }}]
    tls: {{ trust: test-ca, identity: edge, server_name: terminator.causeway.test, alpn: [h2] }}
    tunnel: {{ protocol: http2, authority: "{echo}", max_connections: 2 }}
  - {{ name: venue, endpoints: [{{ address: "{venue}" }}] }}
  - name: sftp
    endpoints: [{{ address: "{sshd}" }}]
    ssh: {{ host_keys: [{keys}/backend_host_ed25519.pub] }}
"#,
        echo = a.echo,
        terminator = a.terminator,
        venue = a.venue,
        sshd = a.sshd,
        keys = f.keys.display(),
    )
}

/// Writes the configuration to `path` whole (a temporary file renamed over it), so a reload
/// never reads half a file.
pub fn write(path: &Path, text: &str) -> crate::Result<()> {
    let temporary = path.with_extension("yaml.new");
    std::fs::write(&temporary, text).map_err(|e| format!("{}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("{}: {e}", path.display()))
}
