"""The HA test's network: one namespace per host, joined by veth pairs to a bridge that
lives in a namespace of its own. Nothing is configured in the root namespace, so no packet
of the test can leave the machine."""
import ctypes
import os
import subprocess

SUBNET = "10.77.0"
# host name -> last octet of its address on the bridge
HOSTS = {
    "client": 2, "lb": 3,
    "r1": 11, "r2": 12, "r3": 13,
    "backends": 20, "venue-a": 21, "venue-b": 22,
}


def address(host):
    return f"{SUBNET}.{HOSTS[host]}"


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Network:
    def __init__(self, prefix):
        self.prefix = prefix
        self.made = []

    def ns(self, host):
        return f"{self.prefix}-{host}"

    def create(self):
        switch = self.ns("switch")
        run("ip", "netns", "add", switch)
        self.made.append(switch)
        run("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", switch, "link", "set", "br0", "up")
        for host in HOSTS:
            ns = self.ns(host)
            run("ip", "netns", "add", ns)
            self.made.append(ns)
            port = f"p-{host}"[:15]
            run("ip", "-n", switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "-n", switch, "link", "set", port, "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{address(host)}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")

    def link(self, host, up):
        """The host's only link, down (its namespace is cut off) or up again."""
        run("ip", "-n", self.ns(host), "link", "set", "eth0", "up" if up else "down")

    def destroy(self):
        for ns in reversed(self.made):
            kill_all_in(ns)
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        self.made.clear()


def kill_all_in(ns):
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        if int(pid) == os.getpid():
            continue  # the test itself lives in the client namespace
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


def enter(ns):
    """Moves this (single-threaded) process into `ns`: the test's clients live there."""
    CLONE_NEWNET = 0x40000000
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/var/run/netns/{ns}") as handle:
        if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
