//! The Envoy configurations of the comparison: a TCP proxy, and the CONNECT terminator of
//! the tunnel topology.

use std::net::SocketAddr;

/// The Envoy terminator's filters: an HTTP/2 connection manager that accepts CONNECT and
/// sends each tunnel's bytes to the cluster `next`.
pub(super) const ENVOY_CONNECT_TERMINATOR: &str = r#"      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inside
          codec_type: HTTP2
          stream_idle_timeout: 0s
          http2_protocol_options: { allow_connect: true }
          upgrade_configs: [{ upgrade_type: CONNECT }]
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { connect_matcher: {} }
                route: { cluster: next, timeout: 0s, upgrade_configs: [{ upgrade_type: CONNECT, connect_config: {} }] }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }"#;

/// An Envoy config: one listener on `port` with `filters`, one cluster `next` to `upstream`
/// (HTTP/2 when `http2`), no admin port, no caps.
pub(super) fn envoy_config(port: u16, filters: &str, upstream: SocketAddr, http2: bool) -> String {
    let protocol = if http2 {
        r#"
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }"#
    } else {
        ""
    };
    format!(
        r#"static_resources:
  listeners:
  - name: bench
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
{filters}
  clusters:
  - name: next
    type: STATIC
    connect_timeout: 5s{protocol}
    circuit_breakers:
      thresholds:
      - {{ max_connections: 1000000, max_pending_requests: 1000000, max_requests: 1000000 }}
    load_assignment:
      cluster_name: next
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: {ip}, port_value: {uport} }} }} }}
"#,
        ip = upstream.ip(),
        uport = upstream.port()
    )
}

/// Envoy's plain TCP proxy from `port` to `backend`.
pub(super) fn envoy_tcp_proxy(port: u16, backend: SocketAddr) -> String {
    envoy_config(
        port,
        r#"      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: bench
          cluster: next
          idle_timeout: 0s"#,
        backend,
        false,
    )
}
