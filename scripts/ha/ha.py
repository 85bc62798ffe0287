"""HA, proven with real processes: see docs/high-availability.md. Run by scripts/ha-test."""
import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time

import net
import scenarios
from procs import REPLICAS, Processes
from timeline import Timeline


def main():
    # SIGTERM (a CI timeout, Ctrl-C's cousin) unwinds through the cleanup too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--results", required=True, help="where the figures go (JSON; the plot beside it as .svg)")
    parser.add_argument("--only", help="comma-separated scenario numbers (1-4)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else {"1", "2", "3", "4"}
    network = net.Network(f"cwha{os.getpid()}")
    workdir = tempfile.mkdtemp(prefix="causeway-ha-")
    procs = Processes(network, args.binary, workdir)
    started = time.monotonic()
    try:
        scenarios.say(f"network: {len(net.HOSTS)} namespaces on a bridge (logs in {workdir})")
        network.create()
        net.enter(network.ns("client"))
        procs.start_peers()
        for replica in REPLICAS:
            procs.start_replica(replica)
        scenarios.say("HAProxy has the three replicas UP")
        scenarios.TIMELINE = Timeline()
        scenarios.TIMELINE.sample_from(procs.stats_socket)
        results = asyncio.run(run(procs, network, only))
    except BaseException:
        for name in sorted(os.listdir(workdir)):
            if name.endswith(".log"):
                with open(os.path.join(workdir, name), errors="replace") as f:
                    tail = f.readlines()[-15:]
                print(f"--- {name} (last lines)\n{''.join(tail)}", file=sys.stderr)
        raise
    finally:
        # Processes and namespaces first, whatever else fails.
        try:
            procs.stop_all()
        finally:
            network.destroy()
        plot = args.results.rsplit(".", 1)[0] + ".svg"
        if scenarios.TIMELINE:
            scenarios.TIMELINE.svg(plot)
    results["seconds"] = round(time.monotonic() - started, 1)
    with open(args.results, "w") as f:
        json.dump(results, f, indent=2)
    scenarios.say(f"all scenarios passed in {results['seconds']} s; figures in {args.results}, plot in {plot}")
    for name, figures in results.items():
        print(f"  {name}: {figures}")


# Each scenario's bound: a scenario that hangs fails with its name instead of holding CI.
LIMITS = {"1": 120, "2": 180, "3": 180, "4": 120}


async def run(procs, network, only):
    scenario_runs = {
        "1": ("kill_one_replica", lambda: scenarios.kill_one_replica(procs)),
        "2": ("rolling_upgrade", lambda: scenarios.rolling_upgrade(procs)),
        "3": ("reload_storm", lambda: scenarios.reload_storm(procs)),
        "4": ("venue_link_down", lambda: scenarios.venue_link_down(procs, network)),
    }
    results = {}
    for number, (name, scenario) in scenario_runs.items():
        if number not in only:
            continue
        try:
            async with asyncio.timeout(LIMITS[number]):
                results[name] = await scenario()
        except TimeoutError:
            raise AssertionError(f"scenario {number} ({name}) did not end within {LIMITS[number]} s")
    return results


if __name__ == "__main__":
    main()
