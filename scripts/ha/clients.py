"""The HA test's clients (asyncio, in the client namespace): long-lived echo connections
that notice a close at once and reconnect, one-shot connections, and FIX sessions that
watch their venue with TestRequests."""
import asyncio
import random
import time

from net import address
from procs import ECHO_PORT, FIX_PORT


class Echo:
    """One long-lived connection through the load balancer, kept open: it pings every
    `period`, records every close (when, on which replica, why) and reconnects."""

    def __init__(self, index, log, period=1.0):
        self.index, self.log, self.period = index, log, period
        self.replica = None
        self.reader = self.writer = None
        self.pings = 0
        self.stopping = False

    async def connect(self):
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(address("lb"), ECHO_PORT), 5)
        greeting = await asyncio.wait_for(self.reader.readline(), 5)
        if not greeting:
            raise ConnectionError("closed before the greeting")
        self.replica = greeting.decode().strip()

    async def keep(self):
        """Pings until stopped; a close or a wrong echo is logged, then it reconnects."""
        while not self.stopping:
            why = await self.serve()
            dropped_at, replica = time.monotonic(), self.replica
            self.writer.close()
            while True:
                try:
                    await self.connect()
                    break
                except (OSError, asyncio.TimeoutError, ConnectionError):
                    self.log.refused.append(time.monotonic())
                    await asyncio.sleep(0.05)
            self.log.drops.append({"at": dropped_at, "replica": replica, "why": why,
                                   "reconnected_in": time.monotonic() - dropped_at,
                                   "now_on": self.replica})

    async def serve(self):
        await asyncio.sleep(random.random() * self.period)
        while True:
            try:
                # Waiting on a read (not a timer) notices a close the moment it happens.
                early = await asyncio.wait_for(self.reader.read(1), self.period)
                return "closed" if not early else f"unexpected bytes {early!r}"
            except asyncio.TimeoutError:
                pass
            except OSError as e:
                return f"error {e}"
            text = f"ping {self.index} {self.pings}\n".encode()
            try:
                self.writer.write(text)
                echoed = await asyncio.wait_for(self.reader.readline(), 5)
            except (OSError, asyncio.TimeoutError) as e:
                return f"ping failed {e!r}"
            if not echoed:
                return "closed"
            if echoed != text:
                self.log.corrupt.append((text, echoed))
                return "corrupt echo"
            self.pings += 1


class Log:
    def __init__(self):
        self.drops, self.refused, self.corrupt, self.one_shot_failures = [], [], [], []
        self.one_shots = 0


async def open_all(count, log, period=1.0):
    clients = [Echo(i, log, period) for i in range(count)]
    for start in range(0, count, 100):
        await asyncio.gather(*(c.connect() for c in clients[start:start + 100]))
    tasks = [asyncio.create_task(c.keep()) for c in clients]
    return clients, tasks


async def close_all(clients, tasks):
    for c in clients:
        c.stopping = True
    await stop(tasks)
    for c in clients:
        c.writer.close()


async def stop(tasks, timeout=10):
    """Cancels the tasks and waits for them to end. Python 3.11's `asyncio.wait_for` can
    swallow a cancel that arrives as its inner read completes (fixed in 3.12), and the task
    then goes on: so cancel again until every task has ended, within `timeout`."""
    pending = set(tasks)
    deadline = time.monotonic() + timeout
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} client tasks would not stop"
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    for task in tasks:
        if not task.cancelled() and task.exception():
            raise task.exception()


def spread(clients):
    counts = {}
    for c in clients:
        counts[c.replica] = counts.get(c.replica, 0) + 1
    return dict(sorted(counts.items()))


async def one_shots(log, interval):
    """A new connection every `interval` until cancelled: greeting, one echo, close."""
    async def once(n):
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(address("lb"), ECHO_PORT), 5)
            greeting = await asyncio.wait_for(reader.readline(), 5)
            writer.write(b"one shot\n")
            echoed = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            if not greeting or echoed != b"one shot\n":
                log.one_shot_failures.append((n, greeting, echoed))
        except (OSError, asyncio.TimeoutError) as e:
            log.one_shot_failures.append((n, repr(e)))
        log.one_shots += 1

    running, n = set(), 0
    try:
        while True:
            task = asyncio.create_task(once(n))
            running.add(task)
            task.add_done_callback(running.discard)
            n += 1
            await asyncio.sleep(interval)
    finally:
        await asyncio.gather(*running, return_exceptions=True)


def fix_message(fields, seq):
    """FIX 4.4 with BodyLength and CheckSum; MsgSeqNum (34) after the header's CompIDs."""
    fields = [*fields[:3], (34, seq), *fields[3:]]
    body = "".join(f"{tag}={value}\x01" for tag, value in fields)
    head = f"8=FIX.4.4\x019={len(body)}\x01"
    checksum = sum((head + body).encode()) % 256
    return (head + body + f"10={checksum:03}\x01").encode()


class FixSession:
    """A FIX initiator through the load balancer to VENUE: it logs on, sends a TestRequest
    every 300 ms, and declares the session dead when one goes unanswered for 1 s (or the
    connection closes); then it logs on again. `venue` is who answered the last Logon (the
    Text of its answer: both venues share the CompID VENUE)."""

    def __init__(self, index):
        self.sender = f"CLIENT{index}"
        self.venue = None
        self.logons = []  # (time, venue)

    async def logon(self):
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(address("lb"), FIX_PORT), 3)
        self.seq = 1
        self.send("A", [(98, 0), (108, 1)])
        answer = await asyncio.wait_for(self.receive(), 3)
        if answer.get("35") != "A":
            raise ConnectionError(f"no Logon answer: {answer}")
        self.venue = answer.get("58")
        self.logons.append((time.monotonic(), self.venue))

    def send(self, msg_type, extra):
        fields = [(35, msg_type), (49, self.sender), (56, "VENUE"), (52, "20261205-12:00:00.000"), *extra]
        self.writer.write(fix_message(fields, self.seq))
        self.seq += 1

    async def receive(self):
        raw = await self.reader.readuntil(b"\x0110=")
        raw += await self.reader.readuntil(b"\x01")
        return dict(f.split("=", 1) for f in raw.decode().split("\x01") if "=" in f)

    async def keep(self):
        while True:
            try:
                await self.logon()
            except (OSError, asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.05)
                continue
            await self.watch()
            self.writer.close()
            self.venue = None

    async def watch(self):
        n = 0
        while True:
            await asyncio.sleep(0.3)
            n += 1
            try:
                self.send("1", [(112, f"t{n}")])
                while True:
                    message = await asyncio.wait_for(self.receive(), 1)
                    if message.get("35") == "0" and message.get("112") == f"t{n}":
                        break
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                return
