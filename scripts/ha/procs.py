"""The HA test's processes: three Causeway replicas, HAProxy in front of them, echo
backends and the two FIX venues — each in its own namespace, each with its log file."""
import http.client
import os
import signal
import socket
import subprocess
import time

from net import address

ECHO_PORT, FIX_PORT, PROBES_PORT = 9000, 9878, 9902
REPLICAS = ("r1", "r2", "r3")
# Drain: 2 s for HAProxy to see /ready fail (it needs 2 checks 500 ms apart), then closes
# spread over the last 3 s of a 6 s window.
DRAIN = {"delay": 2.0, "timeout": 6.0, "spread": 3.0}
CHECK_INTERVAL = 0.5


def replica_config(name, generation=0):
    """The replica's configuration; `generation` varies what a reload storm changes."""
    echo_port = 7000 + int(name[1])
    lb = address("lb")
    return f"""# HA test replica {name}, generation {generation}
admin: {{ address: 127.0.0.1:9901, probes: 0.0.0.0:{PROBES_PORT} }}
drain: {{ delay: {DRAIN['delay']}s, timeout: {DRAIN['timeout']}s, spread: {DRAIN['spread']}s }}
listeners:
  - name: echo
    address: 0.0.0.0:{ECHO_PORT}
    proxy_protocol: {{ mode: required, trusted_sources: [{lb}/32] }}
    routes: [{{ name: echo, cluster: echo, idle_timeout: {600 + generation}s }}]
  - name: fix
    address: 0.0.0.0:{FIX_PORT}
    protocol: fix
    proxy_protocol: {{ mode: required, trusted_sources: [{lb}/32] }}
    routes:
      - {{ name: venue, match: {{ fix: {{ target_comp_id: [VENUE] }} }}, cluster: venue }}
clusters:
  - name: echo
    endpoints: [{{ address: "{address('backends')}:{echo_port}" }}]
  - name: venue
    connect_timeout: 1s
    health_check: {{ interval: 200ms, timeout: 200ms, healthy_threshold: 2, unhealthy_threshold: 2 }}
    failback: close
    endpoints:
      - {{ address: "{address('venue-a')}:{FIX_PORT}", priority: 0 }}
      - {{ address: "{address('venue-b')}:{FIX_PORT}", priority: 1 }}
  - name: spare
    endpoints: [{{ address: "127.0.0.1:{10000 + generation}" }}]
"""


def haproxy_config(stats_socket):
    servers = lambda port: "\n".join(
        f"  server {r} {address(r)}:{port} send-proxy-v2 check port {PROBES_PORT} inter {int(CHECK_INTERVAL * 1000)}ms fall 2 rise 2"
        for r in REPLICAS)
    lb = address("lb")
    return f"""global
  maxconn 8000
  stats socket {stats_socket} mode 600 level admin
defaults
  mode tcp
  timeout connect 2s
  timeout client 1h
  timeout server 1h
  # No retries and no redispatch: a connection HAProxy sends to a replica that no longer
  # accepts fails for the client, so the test sees whether readiness really failed first.
  retries 0
  option httpchk GET /ready
frontend echo
  bind {lb}:{ECHO_PORT}
  default_backend echo
frontend fix
  bind {lb}:{FIX_PORT}
  default_backend fix
backend echo
  balance roundrobin
{servers(ECHO_PORT)}
backend fix
  balance roundrobin
{servers(FIX_PORT)}
"""


class Processes:
    def __init__(self, network, binary, workdir):
        self.network, self.binary, self.workdir = network, binary, workdir
        self.running = {}
        self.stats_socket = os.path.join(workdir, "haproxy.sock")

    def spawn(self, name, host, *argv):
        log = open(os.path.join(self.workdir, f"{name}.log"), "ab")
        command = ["ip", "netns", "exec", self.network.ns(host), *argv]
        self.running[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self.running[name]

    def start_peers(self):
        for r in REPLICAS:
            self.spawn(f"echo-{r}", "backends", self.binary, "echo",
                       f"{address('backends')}:{7000 + int(r[1])}", "--name", r)
        # Both venues are VENUE to their clients; the Logon answer's Text says which one.
        for venue in ("venue-a", "venue-b"):
            self.spawn(venue, venue, self.binary, "fix-acceptor", f"{address(venue)}:{FIX_PORT}",
                       "--comp-id", "VENUE", "--name", venue.upper())
        path = os.path.join(self.workdir, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(haproxy_config(self.stats_socket))
        self.spawn("haproxy", "lb", "haproxy", "-db", "-f", path)
        wait_until(lambda: os.path.exists(self.stats_socket), 10, "HAProxy's stats socket")
        for host, port in [("backends", 7001), ("venue-a", FIX_PORT), ("venue-b", FIX_PORT)]:
            wait_until(lambda: connectable(address(host), port), 10, f"{host}:{port}")

    def config_path(self, replica):
        return os.path.join(self.workdir, f"{replica}.yaml")

    def write_config(self, replica, generation=0):
        path = self.config_path(replica)
        with open(path + ".new", "w") as f:
            f.write(replica_config(replica, generation))
        os.replace(path + ".new", path)

    def start_replica(self, replica):
        """Starts it and waits until HAProxy has it UP in both backends."""
        if not os.path.exists(self.config_path(replica)):
            self.write_config(replica)
        process = self.spawn(replica, replica, self.binary, "run", "--config", self.config_path(replica))

        def ready():
            assert process.poll() is None, f"{replica} exited {process.returncode} at start"
            return probe(replica, "/ready")[0] == 200
        wait_until(ready, 15, f"{replica} ready")
        wait_until(lambda: self.lb_state(replica) == {"UP"}, 15, f"HAProxy sees {replica} UP")

    def signal(self, name, sig):
        self.running[name].send_signal(sig)

    def wait_exit(self, name, timeout):
        return self.running.pop(name).wait(timeout)

    def kill(self, name):
        self.signal(name, signal.SIGKILL)
        self.wait_exit(name, 10)

    def lb_state(self, replica):
        """The replica's state in each HAProxy backend: {"UP"}, {"DOWN"}, {"UP", "DOWN"}..."""
        rows = haproxy_command(self.stats_socket, "show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        status = header.index("status")
        return {r.split(",")[status].split(" ")[0] for r in rows[1:] if r.split(",")[1:2] == [replica]}

    def stop_all(self):
        for process in self.running.values():
            process.kill()
        for process in self.running.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                pass  # the namespace sweep kills what is left
        self.running.clear()


def haproxy_command(path, command):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def probe(replica, path):
    """GET on the replica's probe listener: (status, body); (0, why) when unreachable."""
    try:
        connection = http.client.HTTPConnection(address(replica), PROBES_PORT, timeout=2)
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    except OSError as e:
        return 0, str(e)


def metric(replica, name):
    """The sum of a metric's samples on the replica's /metrics."""
    status, body = probe(replica, "/metrics")
    assert status == 200, f"{replica} /metrics: {status} {body}"
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def connectable(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
