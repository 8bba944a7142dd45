#!/usr/bin/env python3
"""The agent's end-to-end benchmark: a backlog of raw records in a real Redis, drained by the
release build of `chouette` into a real VictoriaMetrics. Prints a table.

Measures: drain (raw records aggregated per second, until the raw queue is empty), dispatch
(points delivered per second, until the wrapped queue is empty), peak RSS while draining, idle
RSS and idle CPU seconds over 15 s, compressed bytes per point dispatched.
Usage: scripts/bench-agent.sh [RECORDS] (default 1000000).
"""
import os, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
SERIES, SPAN = 1000, 300
TARGET = os.path.join(ROOT, "target", "release")
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def wait_port(port):
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port}")


def redis_cmd(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True).stdout.strip()


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    return 0


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def main():
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "chouette-agent", "--bin", "chouette", "--example", "fill_raw"],
                   cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="chouette-bench-")
    rport, vport = free_port(), free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--dir", tmp], stdout=subprocess.DEVNULL)
    vm = subprocess.Popen(["victoria-metrics", f"-storageDataPath={tmp}/vm", f"-httpListenAddr=127.0.0.1:{vport}",
                           "-retentionPeriod=100y", "-loggerLevel=ERROR"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    agent = None
    try:
        wait_port(rport); wait_port(vport)
        url = f"redis://127.0.0.1:{rport}/0"
        t = time.time()
        subprocess.run([os.path.join(TARGET, "examples", "fill_raw"), url, str(RECORDS), str(SERIES), str(SPAN), "30"], check=True)
        fill_s = time.time() - t
        env = {"PATH": os.environ["PATH"], "REDIS_URL": url, "DATADOG_URL": f"http://127.0.0.1:{vport}/datadog/api",
               "AGGREGATE_INTERVAL": "10", "RELEASE_INTERVAL": "3600", "SEND_SELF_METRICS": "false", "LOG_LEVEL": "WARNING",
               "HOST": "bench", "GLOBAL_TAGS": '["env:bench"]'}
        t0 = time.time()
        agent = subprocess.Popen([os.path.join(TARGET, "chouette")], env=env, stdout=subprocess.DEVNULL)
        drained = dispatched = None
        while True:
            raw = int(redis_cmd(rport, "ZCARD", "chouette:metrics:raw.keys") or 0)
            wrapped = int(redis_cmd(rport, "ZCARD", "chouette:metrics:wrapped.keys") or 0)
            if drained is None and raw == 0:
                drained = time.time()
            if drained is not None and wrapped == 0:
                dispatched = time.time(); break
            if agent.poll() is not None:
                raise SystemExit("the agent exited")
            if time.time() - t0 > 900:
                raise SystemExit("timed out")
            time.sleep(0.05)
        peak_kb = proc_status(agent.pid, "VmHWM")
        status = dict(zip(*[iter(redis_cmd(rport, "HGETALL", "chouette:agent:status").split("\n"))] * 2))
        # status is written at the end of a release tick: wait for it
        for _ in range(100):
            status = dict(zip(*[iter(redis_cmd(rport, "HGETALL", "chouette:agent:status").split("\n"))] * 2))
            if int(status.get("dispatched_metrics", "0")) > 0:
                break
            time.sleep(0.1)
        points = int(status.get("dispatched_metrics", "0"))
        sent_bytes = int(status.get("dispatched_metrics_bytes", "0"))
        time.sleep(2)
        cpu0, t_idle = cpu_secs(agent.pid), time.time()
        time.sleep(15)
        idle_cpu = cpu_secs(agent.pid) - cpu0
        idle_rss = proc_status(agent.pid, "VmRSS")
        agent.send_signal(15); agent.wait(timeout=30); agent = None
        redis_cmd(rport, "FLUSHALL")
        agent = subprocess.Popen([os.path.join(TARGET, "chouette")], env=env, stdout=subprocess.DEVNULL)
        time.sleep(3)
        cpu0 = cpu_secs(agent.pid)
        time.sleep(15)
        fresh_cpu = cpu_secs(agent.pid) - cpu0
        fresh_rss = proc_status(agent.pid, "VmRSS")
        drain_s = drained - t0
        dispatch_s = max(dispatched - drained, 1e-3)
        rows = [
            ("backlog", f"{RECORDS:,} raw records, {SERIES} series, 5 types, over {SPAN} s (filled in {fill_s:.1f} s)", ""),
            ("drain (raw → wrapped)", f"{RECORDS / drain_s:,.0f} records/s ({drain_s:.2f} s)", "≥ 250,000 records/s"),
            ("peak RSS while draining", f"{peak_kb / 1024:.1f} MB", "≤ 24 MB"),
            ("dispatch (wrapped → VictoriaMetrics)", f"{points / dispatch_s:,.0f} points/s ({points:,} points, {dispatch_s:.2f} s)", "≥ 150,000 points/s"),
            ("compressed bytes per point", f"{sent_bytes / max(points, 1):.2f} B", "original: about 15 B"),
            ("idle RSS, fresh agent (nothing queued)", f"{fresh_rss / 1024:.1f} MB", "≤ 8 MB"),
            ("idle CPU over 15 s, fresh agent", f"{fresh_cpu:.3f} CPU-s", "≤ 0.02 CPU-s"),
            ("idle RSS after draining the backlog", f"{idle_rss / 1024:.1f} MB", "≤ 8 MB"),
            ("idle CPU over 15 s after draining", f"{idle_cpu:.3f} CPU-s", "≤ 0.02 CPU-s"),
        ]
        print("| measure | result | target |\n|---|---|---|")
        for name, value, target in rows:
            print(f"| {name} | {value} | {target} |")
    finally:
        for p in (agent, redis, vm):
            if p is not None:
                p.kill(); p.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
