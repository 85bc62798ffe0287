//! Integration tests: real sockets through a gateway running in the test's runtime (or, for
//! signals and the CLI, the real binary).

mod access_log;
mod admin;
mod admin_limits;
mod admin_split;
mod authz;
mod authz_cache;
mod authz_tls;
mod cli;
mod config_errors;
mod drain;
mod failover;
mod fix;
mod limits;
mod load_balancing;
mod metrics;
mod mq;
mod prometheus;
mod proxy_protocol;
mod relay;
mod relay_sizes;
mod reload;
mod routing;
mod sftp;
mod ssh_channels;
mod ssh_security;
mod status_page;
mod tls_inspector;
mod tls_resumption;
mod tls_revocation;
mod tls_termination;
mod tracing;
mod tunnel_drain;
mod tunnel_lifecycle;
mod tunnel_security;
mod tunnels;
