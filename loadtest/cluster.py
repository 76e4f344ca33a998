#!/usr/bin/env python3
"""Scale-out benchmark: a real single-node etcd and REPLICAS stagegate processes on 127.0.0.1.

Measures
  - decision spread: the time from an operator command sent to a follower (forwarded to the
    leader, stored in etcd) until every replica's admin API reports the new weight; CHANGES
    weight changes, median / p99 / max;
  - failover: SIGKILL the leader, time until another replica leads (lease TTL 2 s);
  - etcd writes per replica: stagegate_cluster_counts_published_total over a steady minute
    of light traffic, and etcd's own put/txn counters.
With --long SECONDS it measures instead what a cluster costs etcd over time (issue #20): a
rollout baking at its first stage the whole run, light traffic on every replica (so every
replica's counts change each second, the most it writes), and every --sample seconds etcd's
raft proposals/s, database size (file and in use), revision and keys, the replicas' etcd
connections and requests per second (summed) and the leader's compactions; then a summary
with the 24 h extrapolation. Use a short --lease-ms and a --history-ms that compacts several
times within the run.
Everything runs on loopback and stops by itself (children are killed on exit, on Ctrl-C or
SIGTERM, and by the kernel if this script dies). Usage:
  loadtest/cluster.py [--bin build-release] [--replicas 3] [--changes 50] [--steady 30]
  loadtest/cluster.py --bin build --replicas 50 --long 600 --lease-ms 3000 --history-ms 60000
"""
import argparse
import base64
import ctypes
import http.client as httpclient  # (the name http is the helper below)
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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


def die_with_parent():
    """Run in each child before exec: the kernel SIGKILLs it if this script dies (even SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def metric_lines(body, name):
    """The values of every sample of metric NAME in a Prometheus text BODY."""
    return [float(l.rsplit(" ", 1)[1]) for l in body.splitlines()
            if l.startswith(name + " ") or l.startswith(name + "{")]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def long_run(args, admins, replicas, etcd, etcd_url, etcd_data):
    """--long: ARGS.long seconds of a baking rollout and light traffic, sampled every
    ARGS.sample seconds; prints the table and the 24 h extrapolation."""
    n = len(admins)

    # Every replica must route by the rollout (stage 1, 500 bp) before the clock starts.
    def model(i):
        code, body = http("GET", admins[i][0] + "/api/v1/models/m", timeout=2)
        if code != 200:
            return None, None
        j = json.loads(body)
        bp = next((v["weight_bp"] for v in j["versions"] if v["name"] == "v2"), None)
        return (j.get("rollout") or {}).get("phase"), bp

    if not wait(lambda: all(model(i)[1] == 500 for i in range(n)), limit=60, step=0.5):
        sys.exit("the replicas do not all route the rollout's first stage")

    stop = threading.Event()
    sent = {"ok": 0, "failed": 0}

    def traffic():
        # One kept-alive connection per replica, ARGS.rps requests per second to each, so every
        # replica's stage counts change every second (it then puts them every second: the most).
        conns = [None] * n
        period = 1.0 / (args.rps * n)
        nxt = time.monotonic()
        i = 0
        while not stop.is_set():
            try:
                if conns[i] is None:
                    conns[i] = httpclient.HTTPConnection("127.0.0.1", admins[i][1], timeout=5)
                conns[i].request("POST", "/v1/models/m:predict", body=b"{}",
                                 headers={"Content-Type": "application/json"})
                r = conns[i].getresponse()
                r.read()
                sent["ok" if r.status == 200 else "failed"] += 1
            except (OSError, httpclient.HTTPException):
                sent["failed"] += 1
                if conns[i] is not None:
                    conns[i].close()
                conns[i] = None
            i = (i + 1) % n
            nxt += period
            delay = nxt - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            elif delay < -1.0:  # fell behind (a loaded machine): do not burst to catch up
                nxt = time.monotonic()
        for c in conns:
            if c is not None:
                c.close()

    def sample():
        code, body = http("GET", etcd_url + "/metrics", timeout=10)
        e = {k: sum(metric_lines(body, name)) for k, name in (
            ("proposals", "etcd_server_proposals_committed_total"),
            ("db", "etcd_mvcc_db_total_size_in_bytes"),
            ("in_use", "etcd_mvcc_db_total_size_in_use_in_bytes"),
            ("keys", "etcd_debugging_mvcc_keys_total"),
            ("compact_rev", "etcd_debugging_mvcc_compact_revision"),
            ("puts", "etcd_mvcc_put_total"), ("txns", "etcd_mvcc_txn_total"))}
        code, body = http("POST", etcd_url + "/v3/kv/range", {"key": "Lw=="})
        e["revision"] = int(json.loads(body)["header"]["revision"]) if code == 200 else 0
        s = {"t": time.monotonic(), "etcd": e, "conns": 0.0, "reqs": 0.0, "published": 0.0,
             "compactions": 0.0, "elections": 0.0, "leaders": [], "unanswered": 0,
             "conns_each": [0.0] * n}
        for i in range(n):
            code, body = http("GET", admins[i][0] + "/metrics", timeout=5)
            if code != 200:
                s["unanswered"] += 1
                continue
            s["conns_each"][i] = sum(metric_lines(body,
                                                  "stagegate_cluster_etcd_connections_opened_total"))
            s["conns"] += s["conns_each"][i]
            s["reqs"] += sum(metric_lines(body, "stagegate_cluster_etcd_requests_total"))
            s["published"] += sum(metric_lines(body, "stagegate_cluster_counts_published_total"))
            s["compactions"] += sum(metric_lines(body, "stagegate_cluster_etcd_compactions_total"))
            s["elections"] += sum(metric_lines(body, "stagegate_cluster_elections_won_total"))
            if sum(metric_lines(body, "stagegate_cluster_leader")) > 0:
                s["leaders"].append(i)
        s["phase"], s["bp"] = model(s["leaders"][0]) if len(s["leaders"]) == 1 else (None, None)
        s["etcd_rss"] = rss_kib(etcd.pid)
        s["replicas_rss"] = sum(rss_kib(p.pid) for p in replicas)
        s["data_dir"] = dir_bytes(etcd_data)
        s["sent"] = dict(sent)
        return s

    mib = 1024 * 1024
    print(f"long run: {n} replicas, lease {args.lease_ms} ms, history_ms "
          f"{args.history_ms or 'default'}, {args.rps:g} req/s to each replica, etcd data in "
          f"{etcd_data}, {args.long} s sampled every {args.sample:g} s", flush=True)
    print(f"{'t s':>5} {'props/s':>8} {'db MiB':>7} {'in-use MiB':>10} {'revision':>9} {'keys':>5} "
          f"{'compact@':>9} {'conns/s':>8} {'reqs/s':>7} {'puts/s':>7} {'cmpct':>5} {'leader':>6} "
          f"{'rollout':>16} {'etcd MiB':>8} {'gw MiB':>7}", flush=True)
    feeder = threading.Thread(target=traffic, daemon=True)
    feeder.start()
    samples = [sample()]
    t0 = samples[0]["t"]
    try:
        k = 1
        while samples[-1]["t"] - t0 < args.long - 1e-3:
            target = min(t0 + k * args.sample, t0 + args.long)
            k += 1
            time.sleep(max(0.0, target - time.monotonic()))
            samples.append(sample())
            a, b = samples[-2], samples[-1]
            dt = b["t"] - a["t"]
            lead = ",".join(f"r{i}" for i in b["leaders"]) or "none"
            print(f"{b['t'] - t0:5.0f} {(b['etcd']['proposals'] - a['etcd']['proposals']) / dt:8.2f} "
                  f"{b['etcd']['db'] / mib:7.2f} {b['etcd']['in_use'] / mib:10.2f} "
                  f"{b['etcd']['revision']:9d} {b['etcd']['keys']:5.0f} "
                  f"{b['etcd']['compact_rev']:9.0f} {(b['conns'] - a['conns']) / dt:8.2f} "
                  f"{(b['reqs'] - a['reqs']) / dt:7.2f} {(b['published'] - a['published']) / dt:7.2f} "
                  f"{b['compactions']:5.0f} {lead:>6} {str(b['phase']) + ' ' + str(b['bp']) + ' bp':>16} "
                  f"{b['etcd_rss'] / 1024:8.0f} {b['replicas_rss'] / 1024:7.0f}"
                  + (f"  ({b['unanswered']} replicas did not answer)" if b["unanswered"] else ""),
                  flush=True)
    finally:
        stop.set()
        feeder.join(timeout=10)
    if args.out:
        with open(args.out, "w") as f:
            for s in samples:
                f.write(json.dumps({**s, "t": s["t"] - t0}) + "\n")
    first, last = samples[0], samples[-1]
    span = last["t"] - first["t"]

    def rate(key, sub=None):
        get = (lambda s: s["etcd"][key]) if sub else (lambda s: s[key])
        return (get(last) - get(first)) / span
    props, conns, reqs = rate("proposals", True), rate("conns"), rate("reqs")
    sent_ok = last["sent"]["ok"] - first["sent"]["ok"]
    sent_failed = last["sent"]["failed"] - first["sent"]["failed"]
    print(f"\nsummary over {span:.0f} s ({n} replicas, lease {args.lease_ms} ms):")
    print(f"  traffic: {sent_ok / span:.1f} req/s answered 200 ({sent_failed} failed); "
          f"rollout at the end: {last['phase']} {last['bp']} bp; elections won in the run: "
          f"{last['elections'] - first['elections']:.0f}; leader compactions: "
          f"{last['compactions'] - first['compactions']:.0f}")
    print(f"  raft proposals: {props:.2f}/s ({props / n:.3f}/s per replica), "
          f"{props * 86400 / 1e6:.2f} M per 24 h")
    print(f"  etcd puts + txns: {rate('puts', True) + rate('txns', True):.2f}/s; counts published: "
          f"{rate('published'):.2f}/s")
    print(f"  etcd connections opened: {conns:.3f}/s ({conns / n:.4f}/s per replica), "
          f"{conns * 86400:.0f} per 24 h; etcd requests {reqs:.2f}/s ({reqs / n:.3f}/s per replica)")
    each = sorted((b - a, i) for i, (a, b) in enumerate(zip(first["conns_each"], last["conns_each"])))
    lead = last["leaders"][0] if len(last["leaders"]) == 1 else None
    print(f"  connections opened in the run, per replica: median {each[len(each) // 2][0]:.0f}, "
          f"max {each[-1][0]:.0f} (r{each[-1][1]})" + (
              f", leader r{lead} {last['conns_each'][lead] - first['conns_each'][lead]:.0f}"
              if lead is not None else ""))
    code, body = http("POST", etcd_url + "/v3/kv/range",
                      {"key": base64.b64encode(b"/stagegate/bench/counts/").decode(),
                       "range_end": base64.b64encode(b"/stagegate/bench/counts0").decode()})
    values = [len(base64.b64decode(kv["value"])) for kv in json.loads(body).get("kvs", [])] \
        if code == 200 else []
    if values:
        print(f"  counts documents now: {len(values)}, {min(values)}-{max(values)} bytes "
              f"(mean {sum(values) / len(values):.0f})")
    print(f"  revision +{last['etcd']['revision'] - first['etcd']['revision']} "
          f"({(last['etcd']['revision'] - first['etcd']['revision']) / span:.2f}/s); "
          f"etcd compacted to {last['etcd']['compact_rev']:.0f}")
    # In-use size: where it grows freely (before the first compaction) it gives the growth per
    # second that nothing compacting would keep for good; after, it must stay in a band.
    # "before": nothing written in the run compacted yet (the leader's first compaction is to
    # the revision it noted when it started leading, before the run).
    start_rev = first["etcd"]["revision"]
    compacted = [s for s in samples if s["etcd"]["compact_rev"] >= start_rev]
    before = [s for s in samples if s["etcd"]["compact_rev"] < start_rev]
    if len(before) >= 2:
        g = (before[-1]["etcd"]["in_use"] - before[0]["etcd"]["in_use"]) / (before[-1]["t"] - before[0]["t"])
        per_rev = (before[-1]["etcd"]["in_use"] - before[0]["etcd"]["in_use"]) / max(
            1, before[-1]["etcd"]["revision"] - before[0]["etcd"]["revision"])
        print(f"  in-use growth until history written in the run was compacted (t="
              f"{before[-1]['t'] - t0:.0f} s): {g / 1024:.1f} KiB/s, {per_rev:.0f} B per revision "
              f"(uncompacted: {g * 86400 / 2**30:.2f} GiB per 24 h; the default 2 GiB quota "
              f"full in {2 * 2**30 / g / 3600:.1f} h)" if g > 0 else
              "  in-use size did not grow before the first compaction")
    if compacted:
        half = [s for s in samples if s["t"] - t0 >= span / 2]
        print(f"  once compacting (from t={compacted[0]['t'] - t0:.0f} s): in-use "
              f"{min(s['etcd']['in_use'] for s in compacted) / mib:.2f}-"
              f"{max(s['etcd']['in_use'] for s in compacted) / mib:.2f} MiB; second half of the "
              f"run: in-use {min(s['etcd']['in_use'] for s in half) / mib:.2f}-"
              f"{max(s['etcd']['in_use'] for s in half) / mib:.2f} MiB, db file "
              f"{half[0]['etcd']['db'] / mib:.2f} -> {last['etcd']['db'] / mib:.2f} MiB")
    else:
        print("  no compaction within the run: raise --long or lower --history-ms")
    print(f"  etcd RSS {last['etcd_rss'] / 1024:.0f} MiB, data dir {last['data_dir'] / mib:.1f} MiB "
          f"(WAL preallocated in 64 MiB segments); {n} gateways' RSS "
          f"{last['replicas_rss'] / 1024:.0f} MiB in all")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build-release")
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--steady", type=int, default=30)
    ap.add_argument("--lease-ms", type=int, default=2000)
    ap.add_argument("--long", type=int, default=0, metavar="SECONDS",
                    help="measure etcd's cost over this long instead of spread and failover")
    ap.add_argument("--history-ms", type=int, default=0,
                    help="state.history_ms of every replica (0: the gateway's default)")
    ap.add_argument("--sample", type=float, default=30.0, help="--long: seconds between samples")
    ap.add_argument("--rps", type=float, default=1.0,
                    help="--long: requests per second sent to each replica")
    ap.add_argument("--out", help="--long: also write every sample here, one JSON object a line")
    ap.add_argument("--etcd-arg", action="append", default=[],
                    help="one more etcd flag, such as --etcd-arg=--snapshot-count=5000 (repeat)")
    ap.add_argument("--etcd-dir", default="/dev/shm",
                    help="where etcd keeps its data (default tmpfs; a disk path for a disk)")
    args = ap.parse_args()
    etcd_bin = shutil.which("etcd")
    if not etcd_bin:
        sys.exit("etcd not found: install Debian's etcd-server")
    work = tempfile.mkdtemp(prefix="stagegate-cluster-")
    etcd_dir = tempfile.mkdtemp(prefix="stagegate-cluster-etcd-", dir=args.etcd_dir)
    procs = []

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with it ignored

    def spawn(cmd, log):
        with open(log, "w") as err:
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                 preexec_fn=die_with_parent)
        procs.append(p)
        return p

    try:
        client, peer = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client}"
        etcd = spawn([etcd_bin, "--name", "bench", "--data-dir", f"{etcd_dir}/etcd",
                      "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                      "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                      "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                      "--initial-cluster", f"bench=http://127.0.0.1:{peer}", *args.etcd_arg],
                     f"{work}/etcd.log")
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
            state = {"store": "etcd", "endpoints": [etcd_url], "prefix": "/stagegate/bench",
                     "lease_ttl_ms": args.lease_ms, "replica": f"r{i}"}
            if args.history_ms:
                state["history_ms"] = args.history_ms
            cfg = {
                "listeners": [{"address": "127.0.0.1", "port": free_port()}],
                "admin": {"address": "127.0.0.1", "port": admin},
                "workers": 1,
                "limits": {"max_connections_per_worker": 256},
                "state": state,
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
        if not wait(lambda: leader(alive) is not None, limit=60 if args.long else 20):
            sys.exit("no leader elected")
        if args.long:
            return long_run(args, admins, replicas, etcd, etcd_url, f"{etcd_dir}/etcd")
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
              f" (lease TTL {args.lease_ms} ms)")
    except KeyboardInterrupt:
        sys.exit("interrupted: stopping every process")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(etcd_dir, ignore_errors=True)




if __name__ == "__main__":
    main()
