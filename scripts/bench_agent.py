#!/usr/bin/env python3
"""The agent's end-to-end benchmark: a backlog of raw records in a real Redis, drained by the
release build of `chouette` into a real VictoriaMetrics. Prints a table.

Measures: drain (raw records aggregated per second, until the raw queue is empty), dispatch
(points delivered per second, until the wrapped queue is empty, on a backlog of its own whose
records each make their own point: DISPATCH_SPAN), peak RSS while draining, idle
RSS and idle CPU seconds over 15 s, compressed bytes per point dispatched.

Each rate is also printed as a ratio of a ceiling measured in the same run, on the same machine
(figures from a shared machine are noisy; the ratios much less so):
- the drain's ceiling is Redis's own: the same backlog read and deleted with the fewest commands
  (`examples/redis_ceiling`: ZRANGE, HMGET, ZREM, HDEL in chunks of 10k), in records per second of
  Redis CPU. No drain can go faster than Redis can serve it. The drain does more per record
  than that (the points written, HSTRLEN before loading a queue's first page): the table prints
  Redis's CPU during the drain as a multiple of the ceiling's work, how busy Redis was, and each
  command's share of Redis's command time (INFO commandstats; EXEC's includes the commands it ran).
- the dispatch's ceiling is VictoriaMetrics' own: the agent first sends the same backlog to a
  capturing intake (answers at once), then those very payloads are posted to VictoriaMetrics back
  to back on one connection, in points per second of wall time. The capture run also gives the
  agent's dispatch rate with an instant backend.
Usage: scripts/bench-agent.sh [RECORDS] (default 1000000). COMPRESSION_LEVEL, when set, is
passed to the agent (as MALLOC_* variables are).
"""
import http.client, http.server, json, os, socket, subprocess, sys, tempfile, threading, time, zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
SERIES, SPAN = 1000, 300
# The dispatch is measured on a backlog of its own: the same records over 300 buckets instead of
# 30, so that each becomes its own point (about 540k points for 300k records, against 56k): a
# dispatch of several seconds, which the 50 ms polling measures to about 1 %.
DISPATCH_SPAN = 3000
TARGET = os.path.join(ROOT, "target", "release")
# The agent under test: the static musl build bench-agent.sh passes, else the glibc release build.
AGENT = os.environ.get("CHOUETTE_BIN") or os.path.join(TARGET, "chouette")
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


def command_shares(info):
    """`INFO commandstats` as the commands' shares of Redis's command time, largest first."""
    usec = {}
    for line in info.splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            stats = dict(f.split("=") for f in fields.split(","))
            usec[name] = (int(stats["usec"]), int(stats["calls"]))
    total = sum(u for u, _ in usec.values()) or 1
    top = sorted(usec.items(), key=lambda kv: -kv[1][0])[:7]
    return ", ".join(f"{name} {u / total:.0%} ({calls:,} calls)" for name, (u, calls) in top)


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


class Capture(http.server.BaseHTTPRequestHandler):
    """An intake that keeps every request body and answers 202 at once."""
    bodies = []
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Capture.bodies.append((self.path, self.headers.get("Content-Encoding"), self.headers.get("Content-Type"), body))
        self.send_response(202); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def points_in(encoding, body):
    raw = zlib.decompress(body) if encoding == "deflate" else body
    return sum(len(s.get("points", [])) for s in json.loads(raw).get("series", []))


def fill(url, span=SPAN):
    t = time.time()
    subprocess.run([os.path.join(TARGET, "examples", "fill_raw"), url, str(RECORDS), str(SERIES), str(span), "30"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.time() - t


def redis_ceiling(rport, redis_pid):
    """Records per Redis CPU-second for the fewest commands that read and delete the backlog."""
    url = f"redis://127.0.0.1:{rport}/0"
    fill(url)
    cpu0, t = cpu_secs(redis_pid), time.time()
    subprocess.run([os.path.join(TARGET, "examples", "redis_ceiling"), url], check=True, stdout=subprocess.DEVNULL)
    wall, cpu = time.time() - t, cpu_secs(redis_pid) - cpu0
    return RECORDS / max(cpu, 1e-3), RECORDS / wall


def wait_empty(rport, agent, key="chouette:metrics:wrapped.keys"):
    t0 = time.time()
    while int(redis_cmd(rport, "ZCARD", key) or 0) or int(redis_cmd(rport, "ZCARD", "chouette:metrics:raw.keys") or 0):
        if agent.poll() is not None:
            raise SystemExit("the agent exited")
        if time.time() - t0 > 900:
            raise SystemExit("timed out")
        time.sleep(0.05)


def timed_dispatch(rport, env):
    """Fills the dispatch backlog and runs the agent over it (stopped after, so it writes its
    status): the seconds from the raw queue's end to the wrapped queue's, and the agent's CPU
    seconds meanwhile."""
    redis_cmd(rport, "FLUSHALL")
    fill(f"redis://127.0.0.1:{rport}/0", DISPATCH_SPAN)
    agent = subprocess.Popen([AGENT], env=env, stdout=subprocess.DEVNULL)
    try:
        while int(redis_cmd(rport, "ZCARD", "chouette:metrics:raw.keys") or 0):
            if agent.poll() is not None:
                raise SystemExit("the agent exited")
            time.sleep(0.05)
        t, cpu0 = time.time(), cpu_secs(agent.pid)
        wait_empty(rport, agent)
        return max(time.time() - t, 1e-3), cpu_secs(agent.pid) - cpu0
    finally:
        agent.send_signal(15); agent.wait(timeout=30)


def capture_run(rport, env):
    """The agent drains the backlog into a capturing intake: returns (points/s, bodies)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Capture.bodies = []
    try:
        dispatch_s, _ = timed_dispatch(rport, dict(env, DATADOG_URL=f"http://127.0.0.1:{server.server_address[1]}/datadog/api"))
    finally:
        server.shutdown()
    series = [b for b in Capture.bodies if b[0].endswith("/v1/series")]
    points = sum(points_in(enc, body) for _, enc, _, body in series)
    return points / dispatch_s, series, points


def dispatch_run(rport, env):
    """The agent drains the dispatch backlog into VictoriaMetrics: (points/s, points, seconds,
    the agent's CPU seconds)."""
    dispatch_s, cpu = timed_dispatch(rport, env)
    points = int(redis_cmd(rport, "HGET", "chouette:agent:status", "dispatched_metrics") or 0)
    return points / dispatch_s, points, dispatch_s, cpu


def vm_ceiling(vport, bodies, points):
    """Points per second VictoriaMetrics ingests the captured payloads at, posted back to back."""
    con = http.client.HTTPConnection("127.0.0.1", vport)
    t = time.time()
    for path, encoding, ctype, body in bodies:
        headers = {"Content-Type": ctype or "application/json"}
        if encoding:
            headers["Content-Encoding"] = encoding
        con.request("POST", path, body=body, headers=headers)
        resp = con.getresponse(); resp.read()
        if resp.status >= 300:
            raise SystemExit(f"VictoriaMetrics answered {resp.status} to a captured payload")
    return points / max(time.time() - t, 1e-3)


def main():
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "chouette-agent", "--bin", "chouette",
                    "--example", "fill_raw", "--example", "redis_ceiling"],
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
        redis_cpu_ceiling, redis_wall_ceiling = redis_ceiling(rport, redis.pid)
        env = {"PATH": os.environ["PATH"], "REDIS_URL": url, "DATADOG_URL": f"http://127.0.0.1:{vport}/datadog/api",
               "AGGREGATE_INTERVAL": "10", "RELEASE_INTERVAL": "3600", "SEND_SELF_METRICS": "false", "LOG_LEVEL": "WARNING",
               "HOST": "bench", "GLOBAL_TAGS": '["env:bench"]', **{k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "COMPRESSION_LEVEL"}}
        instant_rate, bodies, captured_points = capture_run(rport, env)
        vm_rate = vm_ceiling(vport, bodies, captured_points)
        dispatch_rate, points, dispatch_s, dispatch_cpu = dispatch_run(rport, env)
        redis_cmd(rport, "FLUSHALL")
        fill_s = fill(url)
        redis_cmd(rport, "CONFIG", "RESETSTAT")
        t0, redis_cpu0 = time.time(), cpu_secs(redis.pid)
        agent = subprocess.Popen([AGENT], env=env, stdout=subprocess.DEVNULL)
        drained = None
        while True:
            raw = int(redis_cmd(rport, "ZCARD", "chouette:metrics:raw.keys") or 0)
            wrapped = int(redis_cmd(rport, "ZCARD", "chouette:metrics:wrapped.keys") or 0)
            if drained is None and raw == 0:
                drained, redis_cpu = time.time(), cpu_secs(redis.pid) - redis_cpu0
                agent_cpu = cpu_secs(agent.pid)
                drain_commands = command_shares(redis_cmd(rport, "INFO", "commandstats"))
            if drained is not None and wrapped == 0:
                break
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
        sent_points = int(status.get("dispatched_metrics", "0"))
        sent_bytes = int(status.get("dispatched_metrics_bytes", "0"))
        time.sleep(2)
        cpu0, t_idle = cpu_secs(agent.pid), time.time()
        time.sleep(15)
        idle_cpu = cpu_secs(agent.pid) - cpu0
        idle_rss = proc_status(agent.pid, "VmRSS")
        agent.send_signal(15); agent.wait(timeout=30); agent = None
        redis_cmd(rport, "FLUSHALL")
        agent = subprocess.Popen([AGENT], env=env, stdout=subprocess.DEVNULL)
        time.sleep(3)
        cpu0 = cpu_secs(agent.pid)
        time.sleep(15)
        fresh_cpu = cpu_secs(agent.pid) - cpu0
        fresh_rss = proc_status(agent.pid, "VmRSS")
        drain_s = drained - t0
        drain_rate = RECORDS / drain_s
        rows = [
            ("backlog", f"{RECORDS:,} raw records, {SERIES} series, 5 types, over {SPAN} s (filled in {fill_s:.1f} s)", ""),
            ("drain ceiling: Redis CPU for ZRANGE+HMGET+ZREM+HDEL", f"{redis_cpu_ceiling:,.0f} records/CPU-s (a client doing only that: {redis_wall_ceiling:,.0f} records/s)", ""),
            ("drain (raw → wrapped)", f"{drain_rate:,.0f} records/s ({drain_s:.2f} s) = {drain_rate / redis_cpu_ceiling:.2f} of the ceiling", "≥ 0.5 of the ceiling"),
            ("Redis during the drain", f"{redis_cpu:.2f} CPU-s = {redis_cpu * redis_cpu_ceiling / RECORDS:.2f}× the ceiling's work per record (it also writes the points, and asks the lengths of a queue's first page), busy {redis_cpu / drain_s:.0%} of the drain", ""),
            ("Redis's command time during the drain", drain_commands, ""),
            ("the agent during the drain (steadier than a rate on a shared machine)", f"{agent_cpu:.2f} CPU-s = {agent_cpu * 1e6 / RECORDS:.2f} µs per record", ""),
            ("peak RSS while draining", f"{peak_kb / 1024:.1f} MB", "≤ 24 MB"),
            ("dispatch ceiling: VictoriaMetrics ingesting the same payloads back to back", f"{vm_rate:,.0f} points/s ({len(bodies)} payloads, {captured_points:,} points)", ""),
            ("dispatch (wrapped → VictoriaMetrics)", f"{dispatch_rate:,.0f} points/s ({points:,} points, {dispatch_s:.2f} s) = {dispatch_rate / vm_rate:.2f} of the ceiling", "≥ 150,000 points/s"),
            ("the agent during the dispatch", f"{dispatch_cpu:.2f} CPU-s = {dispatch_cpu * 1e6 / max(points, 1):.2f} µs per point", ""),
            ("dispatch into an instant intake (the agent's own limit)", f"{instant_rate:,.0f} points/s = {instant_rate / vm_rate:.2f} of VictoriaMetrics' ceiling", ""),
            ("compressed bytes per point", f"{sent_bytes / max(sent_points, 1):.2f} B", "≤ 7 B (original: about 15 B)"),
            ("idle RSS, fresh agent (nothing queued)", f"{fresh_rss / 1024:.1f} MB", "≤ 8 MB"),
            ("idle CPU over 15 s, fresh agent", f"{fresh_cpu:.3f} CPU-s", "≤ 0.02 CPU-s"),
            ("idle RSS after draining the backlog", f"{idle_rss / 1024:.1f} MB", "≤ 8 MB"),
            ("idle CPU over 15 s after draining", f"{idle_cpu:.3f} CPU-s", "≤ 0.02 CPU-s"),
        ]
        kind = "static musl build" if os.environ.get("CHOUETTE_BIN") else "glibc release build"
        print(f"agent: {kind} ({AGENT})\n")
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
