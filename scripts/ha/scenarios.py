"""The four HA scenarios of docs/high-availability.md. Each returns its figures and
raises AssertionError when a promise is broken."""
import asyncio
import signal
import time

import clients
from procs import CHECK_INTERVAL, DRAIN, REPLICAS, metric, wait_until


TIMELINE = None  # set by ha.py: events are marked on the plot


def say(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def mark(label):
    if TIMELINE:
        TIMELINE.mark(label)


async def lb_marks_down(procs, replica, since, timeout=5):
    """Seconds from `since` until HAProxy has `replica` DOWN in both backends."""
    deadline = time.monotonic() + timeout
    while procs.lb_state(replica) != {"DOWN"}:
        assert time.monotonic() < deadline, f"HAProxy never marked {replica} down"
        await asyncio.sleep(0.02)
    return round(time.monotonic() - since, 3)


async def settle(clients_, seconds):
    """Lets the clients ping for a while (every client pings at least once a second)."""
    await asyncio.sleep(seconds)


async def kill_one_replica(procs, count=300):
    say(f"scenario 1: {count} long-lived connections, kill -9 one replica")
    log = clients.Log()
    conns, tasks = await clients.open_all(count, log)
    before = clients.spread(conns)
    say(f"  spread over the replicas: {before}")
    assert len(before) == 3 and min(before.values()) >= count // 5, f"not spread: {before}"
    await settle(conns, 1.5)
    victim = "r2"
    killed_at = time.monotonic()
    procs.kill(victim)
    mark(f"kill -9 {victim}")
    say(f"  killed {victim} (it had {before[victim]} connections)")
    marked_down = await lb_marks_down(procs, victim, killed_at)
    deadline = time.monotonic() + 10
    while len(log.drops) < before[victim] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await settle(conns, 2)
    await clients.close_all(conns, tasks)
    others = [d for d in log.drops if d["replica"] != victim]
    ours = [d for d in log.drops if d["replica"] == victim]
    worst = max((d["reconnected_in"] for d in ours), default=0)
    figures = {"connections": count, "on_killed": before[victim], "dropped_on_killed": len(ours),
               "dropped_elsewhere": len(others), "max_reconnect_s": round(worst, 3),
               "lb_marked_down_s": marked_down,
               "first_drop_after_kill_s": round(min(d["at"] for d in ours) - killed_at, 3) if ours else None,
               "corrupt": len(log.corrupt)}
    say(f"  {figures}")
    assert not others, f"connections on other replicas dropped: {others[:3]}"
    assert len(ours) == before[victim], f"{len(ours)} of {before[victim]} noticed the kill"
    assert all(d["now_on"] != victim for d in ours), "reconnected to the dead replica"
    assert worst <= CHECK_INTERVAL + 1, f"a reconnect took {worst:.2f} s"
    assert marked_down <= 2 * CHECK_INTERVAL + 1, f"HAProxy took {marked_down} s"
    assert not log.corrupt
    procs.start_replica(victim)
    mark(f"{victim} back")
    return figures


async def rolling_upgrade(procs, count=300):
    say(f"scenario 2: rolling upgrade under {count} long-lived connections and 20 new ones/s")
    log = clients.Log()
    conns, tasks = await clients.open_all(count, log)
    generator = asyncio.create_task(clients.one_shots(log, 0.05))
    notices, unready = {}, []
    for replica in REPLICAS:
        on_it = sum(1 for c in conns if c.replica == replica)
        notices[replica] = time.monotonic()
        procs.signal(replica, signal.SIGTERM)
        mark(f"SIGTERM {replica}")
        # Readiness fails first: HAProxy must stop sending before the listener closes.
        unready.append(await lb_marks_down(procs, replica, notices[replica]))
        assert unready[-1] < DRAIN["delay"], f"HAProxy saw {replica} unready only after {unready[-1]} s"
        status = await asyncio.to_thread(procs.wait_exit, replica, DRAIN["timeout"] + 5)
        took = time.monotonic() - notices[replica]
        say(f"  {replica}: out of HAProxy after {unready[-1]} s, drained {on_it} connections, exited {status} in {took:.1f} s; restarting")
        assert status == 0, f"{replica} exited {status}"
        await asyncio.to_thread(procs.start_replica, replica)
        mark(f"{replica} upgraded")
    await settle(conns, 1)
    await clients.stop([generator])
    await clients.close_all(conns, tasks)
    first_close = DRAIN["timeout"] - DRAIN["spread"]
    early = [d for d in log.drops
             if d["at"] - notices.get(d["replica"], float("inf")) < first_close - 0.05]
    figures = {"connections": count, "lb_unready_max_s": max(unready),
               "cut_by_drain": len(log.drops), "cut_before_notice": len(early),
               "new_connections": log.one_shots, "new_refused": len(log.one_shot_failures),
               "reconnect_refused": len(log.refused),
               "max_reconnect_s": round(max((d["reconnected_in"] for d in log.drops), default=0), 3),
               "corrupt": len(log.corrupt)}
    say(f"  {figures}")
    assert not early, f"cut before the spread window: {early[:3]}"
    assert not log.one_shot_failures, f"new connections failed: {log.one_shot_failures[:3]}"
    assert log.one_shots > 100
    assert not log.corrupt
    return figures


async def reload_storm(procs, count=1000, changes=50, seconds=60):
    say(f"scenario 3: {changes} configuration changes in {seconds} s under {count} live connections")
    log = clients.Log()
    conns, tasks = await clients.open_all(count, log)
    say(f"  spread: {clients.spread(conns)}")
    before = {r: metric(r, 'causeway_reloads_total{result="ok"}') for r in REPLICAS}
    started = time.monotonic()
    mark("reload storm")
    for generation in range(1, changes + 1):
        for replica in REPLICAS:
            procs.write_config(replica, generation)
            procs.signal(replica, signal.SIGHUP)
        if generation % 10 == 0:
            say(f"  {generation} changes, {sum(c.pings for c in conns)} echoes so far, {len(log.drops)} broken")
        await asyncio.sleep(max(0, started + generation * seconds / changes - time.monotonic()))
    expected = {r: before[r] + changes for r in REPLICAS}
    await asyncio.to_thread(wait_until, lambda: all(
        metric(r, 'causeway_reloads_total{result="ok"}') == expected[r] for r in REPLICAS), 10, "every reload applied")
    failed = sum(metric(r, 'causeway_reloads_total{result="failed"}') for r in REPLICAS)
    mark("storm over")
    await settle(conns, 1.5)
    pings = sum(c.pings for c in conns)
    await clients.close_all(conns, tasks)
    figures = {"connections": count, "changes": changes, "seconds": seconds, "reloads_applied": changes * 3,
               "reloads_failed": int(failed), "broken": len(log.drops), "echoes": pings, "corrupt": len(log.corrupt)}
    say(f"  {figures}")
    assert not log.drops, f"broken: {log.drops[:3]}"
    assert failed == 0 and not log.corrupt
    return figures


async def venue_link_down(procs, network, sessions=30):
    say(f"scenario 4: {sessions} FIX sessions; the active venue's link goes down, then comes back")
    fix = [clients.FixSession(i + 1) for i in range(sessions)]
    tasks = [asyncio.create_task(s.keep()) for s in fix]

    async def all_on(venue, timeout):
        deadline = time.monotonic() + timeout
        while any(s.venue != venue for s in fix):
            assert time.monotonic() < deadline, f"not all on {venue}: {[s.venue for s in fix]}"
            await asyncio.sleep(0.05)
        return max(s.logons[-1][0] for s in fix)

    try:
        await all_on("VENUE-A", 15)
        say("  all sessions logged on at the active venue")
        down_at = time.monotonic()
        network.link("venue-a", up=False)
        mark("venue-a link down")
        failed_over = await all_on("VENUE-B", 20) - down_at
        say(f"  link down: every session re-logged on at the standby within {failed_over:.2f} s")
        await asyncio.sleep(1)
        up_at = time.monotonic()
        network.link("venue-a", up=True)
        mark("venue-a link up")
        failed_back = await all_on("VENUE-A", 20) - up_at
        say(f"  link up: every session back on the active venue within {failed_back:.2f} s")
    finally:
        await clients.stop(tasks)
    logons = sum(len(s.logons) for s in fix)
    return {"sessions": sessions, "failover_s": round(failed_over, 2), "failback_s": round(failed_back, 2),
            "logons": logons}
