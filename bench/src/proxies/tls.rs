//! Each proxy terminating TLS 1.3 with the bench certificate (`crate::tls::Pki`, written
//! into the run's directory before any target starts), the plaintext to the backend. Session
//! resumption as each ships it: tickets on in HAProxy, nginx and Envoy; Causeway's own
//! choice (docs/tls.md).

use super::Launch;
use super::envoy::envoy_tcp_proxy;
use crate::tls::Pki;
use std::net::SocketAddr;
use std::process::Command;

impl Launch<'_> {
    pub(super) fn causeway_tls(
        &self,
        address: SocketAddr,
        backend: SocketAddr,
    ) -> crate::Result<Command> {
        let Pki { cert, key, .. } = Pki::files(self.dir);
        self.causeway(
            "causeway-tls.yaml",
            format!(
                "identities:\n  - {{ name: bench, cert: {cert}, key: {key} }}\nlisteners:\n  - name: bench\n    address: {address}\n    connection_limit: 1000000\n    routes: [{{ cluster: echo, idle_timeout: 0s, terminate: {{ identities: [bench], min_version: \"1.3\" }} }}]\nclusters:\n  - {{ name: echo, endpoints: [{{ address: \"{backend}\" }}] }}\n",
                cert = cert.display(),
                key = key.display()
            ),
        )
    }

    pub(super) fn haproxy_tls(
        &self,
        address: SocketAddr,
        backend: SocketAddr,
    ) -> crate::Result<Command> {
        let Pki { combined, .. } = Pki::files(self.dir);
        let options = format!(" ssl crt {} ssl-min-ver TLSv1.3", combined.display());
        self.haproxy_binding(address, backend, &options)
    }

    pub(super) fn nginx_tls(
        &self,
        address: SocketAddr,
        backend: SocketAddr,
    ) -> crate::Result<Command> {
        let Pki { cert, key, .. } = Pki::files(self.dir);
        let directives = format!(
            "    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.3;\n",
            cert.display(),
            key.display()
        );
        self.nginx_serving(address, backend, " ssl", &directives)
    }

    pub(super) fn envoy_tls(&self, port: u16, backend: SocketAddr) -> crate::Result<Command> {
        let Pki { cert, key, .. } = Pki::files(self.dir);
        let transport = format!(
            r#"    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_params: {{ tls_minimum_protocol_version: TLSv1_3 }}
            tls_certificates:
            - certificate_chain: {{ filename: {cert} }}
              private_key: {{ filename: {key} }}
      filters:
"#,
            cert = cert.display(),
            key = key.display()
        );
        let config = envoy_tcp_proxy(port, backend).replacen("    - filters:\n", &transport, 1);
        self.envoy("envoy-tls.yaml", config)
    }
}
