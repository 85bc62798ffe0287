//! The status page on the probe listener, in a real headless Chromium driven by
//! playwright-core (`tests/browser/status-page.mjs`): it renders the gateway, shows a
//! failover on its own when the active endpoint stops, and logs no console error.

use crate::cli::Process;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::{Backend, Client};

fn yaml(active: &Backend, standby: &Backend) -> String {
    format!(
        r#"admin: {{ address: 127.0.0.1:0, probes: 127.0.0.1:0 }}
listeners:
  - name: front
    address: 127.0.0.1:0
    routes: [{{ name: main, cluster: venue }}]
clusters:
  - name: venue
    health_check: {{ interval: 50ms, timeout: 200ms, healthy_threshold: 2, unhealthy_threshold: 2 }}
    endpoints:
      - {{ address: "{}", priority: 0 }}
      - {{ address: "{}", priority: 1 }}
"#,
        active.address, standby.address
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_and_shows_a_failover_in_chromium() {
    testkit::bounded(async {
        let mut active = Backend::echo("active").await;
        let standby = Backend::echo("standby").await;
        let mut gw = Process::start(&yaml(&active, &standby));
        tokio::task::block_in_place(|| gw.wait_for("admin API ready"));
        let probes = tokio::task::block_in_place(|| gw.wait_for_address("probe listener ready"));
        let (mut client, greeting) = Client::greeted(gw.address).await;
        assert_eq!(greeting, "active");
        client.assert_echo("a live connection for the page").await;

        let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
        let mut browser = Browser(
            Command::new("node")
                // Its own process group: Chromium goes with it when the test ends early.
                .process_group(0)
                .arg(browser_dir.join("status-page.mjs"))
                .args([format!("http://{probes}/"), "venue".into()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("node runs (scripts/test installs playwright-core in tests/browser)"),
        );
        let mut lines = BufReader::new(browser.0.stdout.take().unwrap()).lines();
        let mut next_line = || {
            let line = tokio::task::block_in_place(|| lines.next());
            line.map_or_else(|| "(the browser script ended)".into(), Result::unwrap)
        };

        let rendered = next_line();
        assert!(rendered.starts_with("rendered "), "{rendered}");
        let page: serde_json::Value = serde_json::from_str(&rendered["rendered ".len()..]).unwrap();
        assert_eq!(page["title"], "Causeway status");
        assert_eq!(page["listeners"], 1, "{page}");
        assert_eq!(page["endpoints"], 2, "{page}");
        assert_eq!(page["connections"], 1, "{page}");

        active.stop().await;
        writeln!(browser.0.stdin.as_mut().unwrap(), "stopped").unwrap();
        let failover = next_line();
        assert!(failover.starts_with("failover "), "{failover}");
        assert!(failover.contains("\"down\":1"), "{failover}");
        assert_eq!(
            next_line(),
            "ok",
            "no console error, page error or failed request"
        );
        let status = tokio::task::block_in_place(|| wait(&mut browser.0));
        assert!(status.success(), "{status:?}");
    })
    .await
}

/// The browser script, killed if the test fails before it ends.
struct Browser(std::process::Child);

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group the script leads.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the browser did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
