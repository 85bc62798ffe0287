//! `causeway demo`: a gateway on a built-in config in front of two echo backends, an active
//! one and a standby, all on loopback.

use crate::serve;
use std::net::SocketAddr;
use std::process::ExitCode;
use testkit::Backend;
use tokio::io::AsyncWriteExt;

const DEMO_CONFIG: &str = r#"
drain:
  timeout: 2s
admin:
  address: 127.0.0.1:0
listeners:
  - name: demo
    address: "{listen}"
    routes:
      - cluster: echo
clusters:
  - name: echo
    health_check:
      interval: 1s
    endpoints:
      - address: "{active}"
        priority: 0
      - address: "{standby}"
        priority: 1
"#;

pub fn run(listen: SocketAddr) -> ExitCode {
    let runtime = match serve::runtime(2) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let active = greeting_echo("active").await;
        let standby = greeting_echo("standby").await;
        let yaml = DEMO_CONFIG
            .replace("{listen}", &listen.to_string())
            .replace("{active}", &active.address.to_string())
            .replace("{standby}", &standby.address.to_string());
        let config =
            config::parse(&yaml, "<built-in demo config>").expect("the demo config is valid");
        let running = match serve::Running::start(&config, None).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}\n(choose another address with --listen 127.0.0.1:PORT)");
                return ExitCode::FAILURE;
            }
        };
        let address = running
            .gateway
            .listener_address("demo")
            .expect("demo listener");
        println!("Causeway demo");
        println!("  gateway listening on {address}");
        println!("  active echo backend  {} (priority 0)", active.address);
        println!("  standby echo backend {} (priority 1)", standby.address);
        if let Some(admin) = running.admin {
            println!("  admin API            http://{admin}/  (try /clusters and /connections)");
        }
        println!();
        println!("Try it:   nc {} {}", address.ip(), address.port());
        println!(
            "Each connection is greeted by the backend it reached, then echoes what you type."
        );
        println!("Ctrl-C stops the demo.");
        running.serve_until_stopped().await;
        ExitCode::SUCCESS
    })
}

/// An echo server that tells the client which backend it reached.
async fn greeting_echo(name: &'static str) -> Backend {
    Backend::start(move |mut stream| async move {
        let local = stream.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let hello = format!("causeway demo: you reached the {name} backend ({local}); type a line and it echoes back\n");
        if stream.write_all(hello.as_bytes()).await.is_ok() {
            testkit::echo(stream).await;
        }
    })
    .await
}

/// `causeway echo ADDRESS --name NAME`: a greeting echo server on a fixed address.
pub fn echo_server(address: SocketAddr, name: &str) -> ExitCode {
    let runtime = match serve::runtime(1) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let _server = Backend::echo_at(address, name).await;
        println!("echo server `{name}` on {address}; Ctrl-C stops it");
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}
