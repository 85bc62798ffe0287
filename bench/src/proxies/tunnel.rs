//! The tunnel topology: an edge carrying each connection in an HTTP/2 CONNECT tunnel to a
//! terminator, which dials the backend; both ends the same program. Between the two ends
//! either plaintext (h2c) or mutual TLS with the bench certificate (`crate::tls::Pki`, both
//! ends presenting it and trusting its CA; ALPN h2).

use super::Launch;
use super::envoy::{ENVOY_CONNECT_TERMINATOR, envoy_config};
use crate::tls::{Pki, SERVER_NAME};
use std::net::SocketAddr;
use std::process::{Child, Command};

impl Launch<'_> {
    /// Starts the terminator (into `children`); the edge's command on `address`.
    pub(super) fn causeway_tunnel(
        &self,
        address: SocketAddr,
        backend: SocketAddr,
        mtls: bool,
        children: &mut Vec<Child>,
    ) -> crate::Result<Command> {
        let workers = self.workers;
        let inside: SocketAddr = ([127, 0, 0, 1], super::free_port()).into();
        let Pki { cert, key, ca, .. } = Pki::files(self.dir);
        let identities = match mtls {
            true => format!(
                "identities:\n  - {{ name: bench, cert: {}, key: {} }}\n  - {{ name: bench-ca, bundle: {} }}\n",
                cert.display(),
                key.display(),
                ca.display()
            ),
            false => String::new(),
        };
        let terminate = match mtls {
            true => {
                "\n        terminate: { identities: [bench], client_certificate: required, trust: bench-ca, alpn: [h2] }"
            }
            false => "",
        };
        children.push(self.spawn(self.causeway(
            &format!("{}-terminator.yaml", self.kind.name()),
            format!(
                "{identities}listeners:\n  - name: inside\n    address: {inside}\n    connection_limit: 1000000\n    routes:\n      - connect: {{ allowed_cidrs: [{ip}/32], allowed_ports: [\"{bport}\"], max_concurrent_streams: 100000 }}{terminate}\n        cluster: echo\n        idle_timeout: 0s\nclusters:\n  - {{ name: echo, endpoints: [{{ address: \"{backend}\" }}] }}\n",
                ip = backend.ip(),
                bport = backend.port()
            ),
        )?)?);
        let tls = match mtls {
            true => format!(
                "\n    tls: {{ trust: bench-ca, identity: bench, server_name: {SERVER_NAME}, alpn: [h2] }}"
            ),
            false => String::new(),
        };
        self.causeway(
            &format!("{}-edge.yaml", self.kind.name()),
            format!(
                "{identities}listeners:\n  - name: bench\n    address: {address}\n    connection_limit: 1000000\n    routes: [{{ cluster: inside, idle_timeout: 0s }}]\nclusters:\n  - name: inside\n    endpoints: [{{ address: \"{inside}\" }}]{tls}\n    tunnel: {{ protocol: http2, authority: \"{backend}\", max_connections: {workers}, max_concurrent_streams: 100000 }}\n"
            ),
        )
    }

    /// Starts the terminator (into `children`); the edge's command on `port`.
    pub(super) fn envoy_tunnel(
        &self,
        port: u16,
        backend: SocketAddr,
        mtls: bool,
        children: &mut Vec<Child>,
    ) -> crate::Result<Command> {
        let inside = super::free_port();
        let mut terminator = envoy_config(inside, ENVOY_CONNECT_TERMINATOR, backend, false);
        let mut edge = envoy_config(
            port,
            &format!(
                r#"      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: bench
          cluster: next
          idle_timeout: 0s
          tunneling_config: {{ hostname: "{backend}" }}"#
            ),
            ([127, 0, 0, 1], inside).into(),
            true,
        );
        if mtls {
            let pki = Pki::files(self.dir);
            terminator = terminator.replacen("    - filters:\n", &envoy_downstream_mtls(&pki), 1);
            edge = edge.replacen("    connect_timeout: 5s\n", &envoy_upstream_mtls(&pki), 1);
        }
        let name = self.kind.name();
        let terminator = self.envoy(&format!("{name}-terminator.yaml"), terminator)?;
        children.push(self.spawn(terminator)?);
        self.envoy(&format!("{name}-edge.yaml"), edge)
    }
}

/// Envoy's `common_tls_context` presenting the bench certificate, trusting its CA, ALPN h2,
/// indented for a transport socket's `typed_config`.
fn envoy_common_tls_context(pki: &Pki) -> String {
    format!(
        r#"          common_tls_context:
            alpn_protocols: [h2]
            tls_params: {{ tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3 }}
            tls_certificates:
            - certificate_chain: {{ filename: {cert} }}
              private_key: {{ filename: {key} }}
            validation_context: {{ trusted_ca: {{ filename: {ca} }} }}
"#,
        cert = pki.cert.display(),
        key = pki.key.display(),
        ca = pki.ca.display()
    )
}

/// The terminator's filter chain head: TLS with a client certificate required.
fn envoy_downstream_mtls(pki: &Pki) -> String {
    format!(
        r#"    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
{}      filters:
"#,
        envoy_common_tls_context(pki)
    )
}

/// The edge's cluster to the terminator: TLS presenting the bench certificate.
fn envoy_upstream_mtls(pki: &Pki) -> String {
    format!(
        r#"    connect_timeout: 5s
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: {SERVER_NAME}
{}"#,
        envoy_common_tls_context(pki)
    )
}
