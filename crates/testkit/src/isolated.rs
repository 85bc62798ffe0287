//! One test run again in a process of its own, for faults the shared test process cannot
//! make without touching the machine or the tests beside it: a network namespace of its own
//! (its own loopback, nftables rules and resolver, deleted afterwards), where a firewall rule
//! may black-hole a port or cut a peer off and a name lookup goes only where the test says.
//!
//! ```ignore
//! #[test]
//! fn a_black_holed_upstream() {
//!     if !isolated::in_netns("faults_network::a_black_holed_upstream") {
//!         return; // the test process: the child ran the body and passed
//!     }
//!     // the child: the body
//! }
//! ```

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Set in the child: the name of the test it runs.
const CHILD: &str = "CAUSEWAY_ISOLATED_TEST";
/// Set in the child when it runs in a namespace of its own (so `nft` may change rules).
const IN_NETNS: &str = "CAUSEWAY_ISOLATED_NETNS";
/// The test process's network namespace (the child checks it is in another).
const PARENT_NETNS: &str = "CAUSEWAY_ISOLATED_PARENT_NETNS";
/// The child's own bound, beyond the body's (`crate::TEST_TIMEOUT`).
const CHILD_TIMEOUT: Duration = Duration::from_secs(90);

/// In the test process: runs the test `name` (its path in the test binary, `module::test`)
/// again in a child inside a network namespace of its own (only a loopback; nftables of its
/// own; a resolver at 127.0.0.1:53 through `/etc/netns/NAME/resolv.conf`, so a name lookup
/// goes nowhere unless the test answers it), waits for it (bounded), fails if it failed,
/// and returns false. In that child: returns true, and the caller runs the test's body.
pub fn in_netns(name: &str) -> bool {
    if std::env::var(CHILD).as_deref() == Ok(name) {
        // Run by hand with the variables set, it would change the machine's firewall.
        let parent = std::env::var(PARENT_NETNS).unwrap_or_default();
        assert_ne!(
            own_netns(),
            parent,
            "{name} is not in a namespace of its own"
        );
        return true;
    }
    let namespace = Namespace::create();
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &namespace.name])
        .arg(std::env::current_exe().expect("the test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .env(IN_NETNS, "1")
        .env(PARENT_NETNS, own_netns())
        .stdin(Stdio::null());
    let output = run_bounded(command);
    drop(namespace);
    let said = format!(
        "--- child stdout ---\n{}\n--- child stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{name} failed in its isolated process ({}):\n{said}",
        output.status
    );
    assert!(
        said.contains("1 passed"),
        "{name} did not run in its isolated process:\n{said}"
    );
    false
}

/// Runs `command` to its end, killing it after [`CHILD_TIMEOUT`].
fn run_bounded(mut command: Command) -> std::process::Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the isolated test");
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(CHILD_TIMEOUT) {
        Ok(output) => output.expect("wait for the isolated test"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("the isolated test did not end within {CHILD_TIMEOUT:?}");
        }
    }
}

/// The network namespace this process is in (`net:[INODE]`).
fn own_netns() -> String {
    let link = std::fs::read_link("/proc/self/ns/net").expect("/proc/self/ns/net");
    link.to_string_lossy().into_owned()
}

/// Applies nftables `rules` (`nft -f -` syntax) in the child's own namespace. Refuses to run
/// anywhere else: the test machine's own firewall is never touched.
pub fn nft(rules: &str) {
    assert!(
        std::env::var_os(IN_NETNS).is_some(),
        "nft is only for a test isolated in a network namespace of its own"
    );
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft (Debian package nftables)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "nft refused:\n{rules}");
}

/// A network namespace with its loopback up and a resolver file of its own; deleted on drop.
struct Namespace {
    name: String,
    etc: PathBuf,
}

impl Namespace {
    fn create() -> Namespace {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cw-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        sweep_leftovers();
        ip(&["netns", "add", &name]);
        let namespace = Namespace {
            etc: PathBuf::from("/etc/netns").join(&name),
            name,
        };
        ip(&["-n", &namespace.name, "link", "set", "lo", "up"]);
        // `ip netns exec` binds this file over /etc/resolv.conf in the child.
        std::fs::create_dir_all(&namespace.etc).unwrap();
        std::fs::write(
            namespace.etc.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
        // Host names from /etc/hosts and DNS only: not through a resolver daemon's socket
        // (systemd-resolved, nscd), which a network namespace does not separate.
        let nsswitch = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
        let mut own: Vec<&str> = (nsswitch.lines())
            .filter(|l| !l.trim_start().starts_with("hosts:"))
            .collect();
        own.push("hosts: files dns");
        std::fs::write(namespace.etc.join("nsswitch.conf"), own.join("\n") + "\n").unwrap();
        namespace
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

/// Deletes the namespaces of test processes that died without deleting theirs (killed).
fn sweep_leftovers() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("cw-test-")
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&name));
        }
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("ip (Debian package iproute2)");
    assert!(status.success(), "ip {} failed", args.join(" "));
}
