//! The single-proxy launchers: Causeway (plain, inspecting FIX or MQ, traced), HAProxy,
//! nginx and Envoy, each relaying to the echo backend.

use super::envoy::envoy_tcp_proxy;
use super::{Launch, free_port};
use std::net::SocketAddr;
use std::process::{Child, Command};

impl Launch<'_> {
    /// Like the rivals here, no per-connection log lines (`--log warn`).
    pub(super) fn causeway_alone(
        &self,
        address: SocketAddr,
        backend: SocketAddr,
        extra: &str,
    ) -> crate::Result<Command> {
        self.causeway(
            &format!("{}.yaml", self.kind.name()),
            format!(
                "{extra}listeners:\n  - name: bench\n    address: {address}\n    connection_limit: 1000000\n    routes: [{{ cluster: echo, idle_timeout: 0s }}]\nclusters:\n  - {{ name: echo, endpoints: [{{ address: \"{backend}\" }}] }}\n"
            ),
        )
    }

    /// Causeway with a `protocol` (fix or mq) listener routing the bench's first message
    /// ([`crate::first_messages`]) to the backend.
    pub(super) fn causeway_inspecting(
        &self,
        address: SocketAddr,
        backend: SocketAddr,
        protocol: &str,
    ) -> crate::Result<Command> {
        use crate::first_messages::{CHANNEL, VENUE};
        let matching = match protocol {
            "fix" => format!("{{ fix: {{ target_comp_id: [{VENUE}] }} }}"),
            _ => format!("{{ mq: {{ channel: [{CHANNEL}] }} }}"),
        };
        self.causeway(
            &format!("{}.yaml", self.kind.name()),
            format!(
                "listeners:\n  - name: bench\n    address: {address}\n    protocol: {protocol}\n    connection_limit: 1000000\n    routes: [{{ match: {matching}, cluster: echo, idle_timeout: 0s }}]\nclusters:\n  - {{ name: echo, endpoints: [{{ address: \"{backend}\" }}] }}\n"
            ),
        )
    }

    /// [`Self::causeway_alone`] with tracing on, sampling `ratio` of the connections, its
    /// spans exported over OTLP/gRPC to `causeway trace-receiver --quiet` (into `helpers`).
    pub(super) fn causeway_traced(
        &self,
        address: SocketAddr,
        backend: SocketAddr,
        ratio: f64,
        helpers: &mut Vec<Child>,
    ) -> crate::Result<Command> {
        let collector: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut receiver = Command::new(&self.bins.causeway);
        receiver.args(["trace-receiver", &collector.to_string(), "--quiet"]);
        helpers.push(self.spawn(receiver)?);
        self.causeway(
            "causeway-traced.yaml",
            format!(
                "tracing: {{ endpoint: \"http://{collector}\", sampler: {{ ratio: {ratio} }} }}\nlisteners:\n  - name: bench\n    address: {address}\n    connection_limit: 1000000\n    routes: [{{ cluster: echo, idle_timeout: 0s }}]\nclusters:\n  - {{ name: echo, endpoints: [{{ address: \"{backend}\" }}] }}\n"
            ),
        )
    }

    pub(super) fn envoy_alone(&self, port: u16, backend: SocketAddr) -> crate::Result<Command> {
        self.envoy("envoy.yaml", envoy_tcp_proxy(port, backend))
    }

    pub(super) fn haproxy(
        &self,
        address: SocketAddr,
        backend: SocketAddr,
    ) -> crate::Result<Command> {
        self.haproxy_binding(address, backend, "")
    }

    /// HAProxy with `bind_options` after its `bind ADDRESS`.
    pub(super) fn haproxy_binding(
        &self,
        address: SocketAddr,
        backend: SocketAddr,
        bind_options: &str,
    ) -> crate::Result<Command> {
        let workers = self.workers;
        let config = self.file(
            "haproxy.cfg",
            format!(
                "global\n  nbthread {workers}\n  maxconn 9000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 24h\n  timeout server 24h\nlisten bench\n  bind {address}{bind_options}\n  server echo {backend}\n"
            ),
        )?;
        let mut c = Command::new(&self.bins.haproxy);
        c.arg("-db").arg("-f").arg(config);
        Ok(c)
    }

    pub(super) fn nginx(&self, address: SocketAddr, backend: SocketAddr) -> crate::Result<Command> {
        self.nginx_serving(address, backend, "", "")
    }

    /// nginx with `listen_options` after its `listen ADDRESS` and `directives` in the server.
    pub(super) fn nginx_serving(
        &self,
        address: SocketAddr,
        backend: SocketAddr,
        listen_options: &str,
        directives: &str,
    ) -> crate::Result<Command> {
        let (workers, dir) = (self.workers, self.dir);
        let config = self.file(
            "nginx.conf",
            format!(
                "load_module {module};\nworker_processes {workers};\nworker_rlimit_nofile 20000;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log warn;\nevents {{ worker_connections 19000; }}\nstream {{\n  server {{\n    listen {address}{listen_options};\n{directives}    proxy_pass {backend};\n    proxy_timeout 24h;\n    proxy_half_close on;\n  }}\n}}\n",
                module = self.bins.nginx_stream_module.display(),
                dir = dir.display()
            ),
        )?;
        let mut c = Command::new(&self.bins.nginx);
        c.arg("-e")
            .arg(dir.join("nginx-error.log"))
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(config);
        Ok(c)
    }
}
