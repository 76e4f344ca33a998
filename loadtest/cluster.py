#!/usr/bin/env python3
"""Scale-out benchmark: a real single-node etcd and REPLICAS stagegate processes on 127.0.0.1.

Measures
  - decision spread: the time from an operator command sent to a follower (forwarded to the
    leader, stored in etcd) until every replica's admin API reports the new weight; CHANGES
    weight changes, median / p99 / max;
  - failover: SIGKILL the leader, time until another replica leads (lease TTL 2 s);
  - etcd writes per replica: stagegate_cluster_counts_published_total over a steady minute
    of light traffic, and etcd's own put/txn counters.
Everything runs on loopback and stops by itself. Usage:
  loadtest/cluster.py [--bin build-release] [--replicas 3] [--changes 50] [--steady 30]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(method, url, body=None, timeout=5):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def wait(cond, limit=20.0, step=0.002):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build-release")
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--steady", type=int, default=30)
    args = ap.parse_args()
    etcd_bin = shutil.which("etcd")
    if not etcd_bin:
        sys.exit("etcd not found: install Debian's etcd-server")
    work = tempfile.mkdtemp(prefix="stagegate-cluster-")
    procs = []

    def spawn(cmd, log):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        procs.append(p)
        return p

    try:
        client, peer = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client}"
        spawn([etcd_bin, "--name", "bench", "--data-dir", f"{work}/etcd",
               "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
               "--listen-peer-urls", f"http://127.0.0.1:{peer}",
               "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
               "--initial-cluster", f"bench=http://127.0.0.1:{peer}"], f"{work}/etcd.log")
        if not wait(lambda: http("POST", etcd_url + "/v3/kv/range", {"key": "Lw=="})[0] == 200):
            sys.exit("etcd did not start")
        mocks = []
        for v in ("v1", "v2"):
            port = free_port()
            spawn([f"{args.bin}/stagegate-mockmodel", "--version", v, "--listen",
                   f"127.0.0.1:{port}"], f"{work}/{v}.log")
            mocks.append(port)
        admins, replicas = [], []
        for i in range(args.replicas):
            admin = free_port()
            cfg = {
                "listeners": [{"address": "127.0.0.1", "port": free_port()}],
                "admin": {"address": "127.0.0.1", "port": admin},
                "workers": 1,
                "state": {"store": "etcd", "endpoints": [etcd_url], "prefix": "/stagegate/bench",
                          "lease_ttl_ms": 2000, "replica": f"r{i}"},
                "models": [{"name": "m", "stable": "v1",
                            "versions": [{"name": "v1", "endpoints": [f"127.0.0.1:{mocks[0]}"]},
                                         {"name": "v2", "endpoints": [f"127.0.0.1:{mocks[1]}"]}],
                            "rollout": {"candidate": "v2", "interval_ms": 1000,
                                        "stages": [{"weight_bp": 500, "min_bake_ms": 3600000},
                                                   {"weight_bp": 5000, "min_bake_ms": 3600000}]}}],
            }
            path = f"{work}/r{i}.json"
            with open(path, "w") as f:
                json.dump(cfg, f)
            replicas.append(spawn([f"{args.bin}/stagegate", "--config", path], f"{work}/r{i}.log"))
            # (admin API URL, traffic port)
            admins.append((f"http://127.0.0.1:{admin}", cfg["listeners"][0]["port"]))

        def cluster(i):
            code, body = http("GET", admins[i][0] + "/api/v1/cluster", timeout=1)
            return json.loads(body) if code == 200 else {}

        def weight(i):
            code, body = http("GET", admins[i][0] + "/api/v1/models/m", timeout=1)
            if code != 200:
                return None
            for v in json.loads(body)["versions"]:
                if v["name"] == "v2":
                    return v["weight_bp"]
            return None

        def leader(alive):
            found = [i for i in alive if cluster(i).get("leader")]
            return found[0] if len(found) == 1 else None

        alive = list(range(args.replicas))
        if not wait(lambda: leader(alive) is not None):
            sys.exit("no leader elected")
        lead = leader(alive)
        follower = next(i for i in alive if i != lead)
        spreads, acks = [], []
        for n in range(args.changes):
            bp = 100 + (n % 9) * 100
            t0 = time.monotonic()
            code, body = http("PUT", admins[follower][0] + "/api/v1/rollouts/m/weight",
                              {"weight_bp": bp, "reason": "bench"})
            if code != 200:
                sys.exit(f"weight change refused: {code} {body}")
            acks.append(time.monotonic() - t0)
            if not wait(lambda: all(weight(i) == bp for i in alive), limit=10, step=0.0005):
                sys.exit("replicas did not converge")
            spreads.append(time.monotonic() - t0)

        def summary(xs):
            xs = sorted(x * 1000 for x in xs)
            p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
            return f"median {statistics.median(xs):.1f} ms, p99 {p99:.1f} ms, max {xs[-1]:.1f} ms"

        print(f"replicas: {args.replicas}, weight changes sent to a follower: {args.changes}")
        print(f"  acknowledged (forwarded, stored in etcd): {summary(acks)}")
        print(f"  every replica routing by it:              {summary(spreads)}")

        def counter(i, name):
            code, body = http("GET", admins[i][0] + "/metrics", timeout=2)
            for line in body.splitlines():
                if line.startswith(name + "{") or line.startswith(name + " "):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        def etcd_counter(name):
            code, body = http("GET", etcd_url + "/metrics")
            return sum(float(l.rsplit(" ", 1)[1]) for l in body.splitlines()
                       if l.startswith(name + " ") or l.startswith(name + "{"))

        before = [counter(i, "stagegate_cluster_counts_published_total") for i in alive]
        etcd_before = etcd_counter("etcd_mvcc_put_total") + etcd_counter("etcd_mvcc_txn_total")
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.steady:  # light traffic on every replica
            for i in alive:
                http("POST", f"http://127.0.0.1:{admins[i][1]}/v1/models/m:predict", {})
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        after = [counter(i, "stagegate_cluster_counts_published_total") for i in alive]
        etcd_after = etcd_counter("etcd_mvcc_put_total") + etcd_counter("etcd_mvcc_txn_total")
        rates = [(a - b) / elapsed for a, b in zip(after, before)]
        print(f"steady {elapsed:.0f} s: counts published per replica per second: "
              + ", ".join(f"r{i} {r:.2f}" for i, r in zip(alive, rates)))
        print(f"  etcd puts + txns per second, whole cluster: {(etcd_after - etcd_before) / elapsed:.2f}"
              f" (keepalives and reads not counted)")

        replicas[lead].send_signal(signal.SIGKILL)
        replicas[lead].wait()
        t0 = time.monotonic()
        alive = [i for i in alive if i != lead]
        if not wait(lambda: leader(alive) is not None, limit=15):
            sys.exit("no new leader after the kill")
        print(f"leader SIGKILLed: r{leader(alive)} led after {(time.monotonic() - t0) * 1000:.0f} ms"
              f" (lease TTL 2000 ms)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
