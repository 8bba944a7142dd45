#!/usr/bin/env python3
"""DogStatsD end to end, side by side: Chouette, Etsy's statsd (npm) and collectd's statsd plugin.

For each system, each mode (plain `bench.c<i>:1|c`, tagged `...|#env:bench,ctx:<i>`) and each
rate of the ladder, a fresh server is started, `dogstatsd-blast` sends one-line count datagrams
(value 1, round robin over CONTEXTS names) for DURATION seconds, and what the system delivered is
summed once it stops changing:

- Chouette: the release agent, a Redis store, a VictoriaMetrics on a free loopback port as the
  Datadog backend; delivered = Σ of every exported `bench.c*` sample.
- statsd: flushInterval 1 s, its graphite backend to a TCP sink of this script; delivered =
  Σ of the `stats_counts.bench.c*` values (the count per flush, exact integers).
- collectd: the statsd plugin with CounterSum, interval 1 s, write_graphite to the same kind of
  sink; delivered = Σ of the `count-bench_c*` values (the change per interval).

loss = 1 − delivered / sent. Kernel drops are the server socket's `drops` column of
/proc/net/udp (what a full receive buffer lost); Chouette's own status (dogstatsd.*) says the
rest. Peak RSS is VmHWM of the server process; CPU s its user+system time from ready to done.
A rate is lossless when less than 0.1 % is lost.

Usage: scripts/bench-dogstatsd.sh [--systems chouette,statsd,collectd] [--modes plain,tagged]
       [--rates 10000,25000,...] [--duration 5] [--contexts 10000] [--full-ladder] [--trace-drops]
Without --full-ladder, a system's ladder (per mode) stops after a rate that lost more than 5 %.
"""
import argparse, os, re, shutil, signal, socket, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
RELEASE = os.path.join(TARGET, "release")
# The agent under test: --chouette-bin (bench-dogstatsd.sh passes the static musl build that
# ships, when it can build one), else the host's release build.
CHOUETTE = os.path.join(RELEASE, "chouette")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "chouette")
STATSD_JS = os.path.join(CACHE, "statsd", "node_modules", "statsd", "stats.js")
CLK = os.sysconf("SC_CLK_TCK")
LOSSLESS = 0.001


def free_port(kind=socket.SOCK_STREAM):
    """A port free for both TCP and UDP on 127.0.0.1."""
    while True:
        s = socket.socket(socket.AF_INET, kind); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        try:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", port)); u.close()
            t = socket.socket(); t.bind(("127.0.0.1", port)); t.close()
            return port
        except OSError:
            continue


def wait_tcp(port, what, proc=None, within=30):
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise SystemExit(f"{what} exited ({proc.returncode}) before listening on {port}")
            time.sleep(0.02)
    raise SystemExit(f"{what}: nothing listens on {port}")


def udp_sockets(port):
    """(inode, drops) of every UDP socket bound to `port` (/proc/net/udp and udp6)."""
    rows = []
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if int(cols[1].rsplit(":", 1)[1], 16) == port:
                        rows.append((int(cols[9]), int(cols[12])))
        except FileNotFoundError:
            pass
    return rows


def wait_udp(port, what, proc, within=30):
    deadline = time.time() + within
    while time.time() < deadline:
        if udp_sockets(port):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited ({proc.returncode}) before binding UDP {port}")
        time.sleep(0.02)
    raise SystemExit(f"{what}: nothing bound UDP {port} within {within} s")


def udp_drops(port):
    return sum(drops for _, drops in udp_sockets(port))


def vm_hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def cpu_secs(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / CLK
    except FileNotFoundError:
        return 0.0


def http_get(port, path, timeout=30):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        chunks = []
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            chunks.append(b)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return body.decode()


class GraphiteSink:
    """A Graphite plaintext receiver (`name value timestamp` lines over TCP) that sums the values
    of the names matching a pattern and remembers when the sum last changed."""

    def __init__(self, pattern):
        self.pattern = re.compile(pattern)
        self.total = 0.0
        self.lines = 0
        self.changed = time.time()
        self.lock = threading.Lock()
        self.server = socket.socket(); self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0)); self.server.listen(16)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        rest = b""
        with conn:
            while True:
                try:
                    data = conn.recv(1 << 16)
                except OSError:
                    return
                if not data:
                    return
                lines = (rest + data).split(b"\n"); rest = lines.pop()
                added, count = 0.0, 0
                for line in lines:
                    parts = line.split()
                    if len(parts) >= 2 and self.pattern.search(parts[0].decode(errors="replace")):
                        try:
                            value = float(parts[1])
                        except ValueError:
                            continue
                        if value == value:  # not NaN
                            added += value; count += 1
                with self.lock:
                    self.lines += count
                    if added:
                        self.total += added; self.changed = time.time()

    def read(self):
        with self.lock:
            return self.total, self.changed

    def close(self):
        self.server.close()


def settle(read, quiet, within, min_wait=0.0):
    """Polls `read() -> (total, changed_at)` until it has not changed for `quiet` seconds (and
    `min_wait` has passed); returns the total. Gives up after `within` seconds."""
    start = time.time()
    while True:
        total, changed = read()
        now = time.time()
        if now - start >= min_wait and now - changed >= quiet:
            return total
        if now - start > within:
            print(f"note: still changing after {within} s; taking {total:,.0f}", file=sys.stderr)
            return total
        time.sleep(0.25)


class DropTrace:
    """Samples the socket's kernel drops every 20 ms while the generator runs; summarised as the
    bursts of drops with their time from the blast's start: `+312@1.01s`."""

    def __init__(self, port):
        self.port, self.samples, self.running = port, [], True
        self.thread = threading.Thread(target=self._run, daemon=True); self.thread.start()

    def _run(self):
        start = time.time()
        while self.running:
            self.samples.append((time.time() - start, udp_drops(self.port))); time.sleep(0.02)

    def stop(self):
        self.running = False; self.thread.join()
        bursts, prev, burst = [], 0, None
        for t, drops in self.samples:
            if drops > prev:
                if burst is None:
                    burst = [t, 0]
                burst[1] += drops - prev
            elif burst is not None:
                bursts.append(burst); burst = None
            prev = drops
        if burst is not None:
            bursts.append(burst)
        shown = sorted(sorted(bursts, key=lambda b: -b[1])[:8])  # the 8 largest, in time order
        more = f" (+{len(bursts) - len(shown)} smaller bursts)" if len(bursts) > len(shown) else ""
        return " ".join(f"+{n}@{t:.2f}s" for t, n in shown) + more


def blast(port, rate, duration, contexts, tagged):
    args = [os.path.join(RELEASE, "dogstatsd-blast"), "--target", f"127.0.0.1:{port}", "--rate", str(rate),
            "--duration", str(duration), "--contexts", str(contexts)]
    if tagged:
        args.append("--tagged")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    fields = dict(kv.split("=", 1) for kv in out.split())
    return int(fields["sent"]), float(fields["rate"]), float(fields["late_ms"])


class Run:
    """One system under test: start() → port; delivered() once the sum is still; finish() → the
    final sum (after a graceful stop where the system buffers its output); stop()."""
    pid = None

    def finish(self, delivered):
        return delivered


class Chouette(Run):
    name = "chouette"

    def __init__(self, tmp, redis_port):
        self.tmp, self.redis_port = tmp, redis_port

    def start(self):
        subprocess.run(["redis-cli", "-p", str(self.redis_port), "FLUSHALL"], capture_output=True, check=True)
        self.vm_port, self.port = free_port(), free_port()
        self.vm_dir = tempfile.mkdtemp(prefix="vm-", dir=self.tmp)
        self.vm = subprocess.Popen(["victoria-metrics", f"-storageDataPath={self.vm_dir}", f"-httpListenAddr=127.0.0.1:{self.vm_port}",
                                    "-retentionPeriod=100y", "-search.disableCache", "-dedup.minScrapeInterval=1ms",
                                    "-loggerLevel=ERROR"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_tcp(self.vm_port, "victoria-metrics", self.vm)
        self.env = {"PATH": os.environ["PATH"], "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                    "DATADOG_URL": f"http://127.0.0.1:{self.vm_port}/datadog/api",
                    "AGGREGATE_INTERVAL": "1", "RELEASE_INTERVAL": "1", "SEND_SELF_METRICS": "false",
                    "LOG_LEVEL": "WARNING", "HOST": "bench", "DOGSTATSD_PORT": str(self.port)}
        self.log = open(os.path.join(self.tmp, "chouette.log"), "a")
        self.proc = subprocess.Popen([CHOUETTE], env=self.env, stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        wait_udp(self.port, "chouette", self.proc)
        return self.port

    def _sum(self):
        http_get(self.vm_port, "/internal/force_flush")
        body = http_get(self.vm_port, "/api/v1/export?match%5B%5D=%7B__name__%3D~%22bench%5C%5C.c.*%22%7D")
        total = 0.0
        for m in re.finditer(r'"values":\[([^\]]*)\]', body):
            total += sum(float(v) for v in m.group(1).split(",") if v)
        return total

    def delivered(self):
        state = {"total": -1.0, "changed": time.time()}

        def read():
            total = self._sum()
            if total != state["total"]:
                state["total"], state["changed"] = total, time.time()
            return state["total"], state["changed"]
        # buckets close each second, the release step runs each second: 4 quiet seconds
        return settle(read, quiet=4, within=120, min_wait=3)

    def status(self):
        """`chouette status`: ({queue: length}, {field: value})."""
        out = subprocess.run([CHOUETTE, "status"], env=self.env, capture_output=True, text=True).stdout
        queues, fields, section = {}, {}, None
        for line in out.splitlines():
            if not line.startswith(" "):
                section = line.rstrip(":")
                continue
            if section == "queues":  # "  raw metrics   12": names have spaces
                name, _, length = line.strip().rpartition(" ")
                queues[name.strip()] = length
            elif section == "status":  # "  field   value"
                parts = line.split(None, 1)
                if len(parts) == 2:
                    fields[parts[0]] = parts[1].strip()
        return queues, fields

    def detail(self):
        queues, st = self.status()
        keys = ["dogstatsd.udp.datagrams", "dogstatsd.udp.kernel_drops", "dogstatsd.udp.truncated",
                "dogstatsd.samples", "dogstatsd.udp.recv_buffer", "dogstatsd.contexts", "dogstatsd.late"]
        parts = [f"{k.split('.', 1)[1]}={st[k]}" for k in keys if k in st]
        parts += [f"{k.split('.', 1)[1]}={v}" for k, v in sorted(st.items())
                  if k.startswith(("dogstatsd.refused.", "dogstatsd.ignored.")) and v not in ("0", "")]
        if not parts:
            parts = ["no dogstatsd.* status fields"]
        parts += [f"queue '{q}'={n}" for q, n in queues.items() if n != "0"]
        return " ".join(parts)

    def stop(self):
        for p in (getattr(self, "proc", None), getattr(self, "vm", None)):
            if p is not None and p.poll() is None:
                p.kill(); p.wait()
        shutil.rmtree(getattr(self, "vm_dir", ""), ignore_errors=True)


class Statsd(Run):
    name = "statsd"

    def __init__(self, tmp):
        self.tmp = tmp

    def start(self):
        self.port, mgmt = free_port(), free_port()
        self.sink = GraphiteSink(r"^stats_counts\.bench\.c")
        conf = os.path.join(self.tmp, "statsd.js")
        with open(conf, "w") as f:
            f.write(f"""{{
  port: {self.port}, address: "127.0.0.1", mgmt_port: {mgmt}, mgmt_address: "127.0.0.1",
  flushInterval: 1000, deleteCounters: true,
  backends: ["./backends/graphite"],
  graphiteHost: "127.0.0.1", graphitePort: {self.sink.port},
  graphite: {{ legacyNamespace: true }}
}}
""")
        self.log = open(os.path.join(self.tmp, "statsd.log"), "a")
        self.proc = subprocess.Popen(["node", STATSD_JS, conf], cwd=os.path.dirname(STATSD_JS),
                                     stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        wait_udp(self.port, "statsd", self.proc)
        return self.port

    def delivered(self):
        return settle(self.sink.read, quiet=3, within=120, min_wait=2)

    def detail(self):
        return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill(); self.proc.wait()
        self.sink.close()


class Collectd(Run):
    name = "collectd"

    def __init__(self, tmp):
        self.tmp = tmp

    def start(self):
        self.port = free_port()
        self.sink = GraphiteSink(r"\.statsd\.count-bench_c")
        base = tempfile.mkdtemp(prefix="collectd-", dir=self.tmp)
        conf = os.path.join(base, "collectd.conf")
        with open(conf, "w") as f:
            f.write(f"""Hostname "bench"
FQDNLookup false
BaseDir "{base}"
PIDFile "{base}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval 1
AutoLoadPlugin false
LoadPlugin logfile
<Plugin logfile>
  LogLevel "warning"
  File STDERR
</Plugin>
LoadPlugin statsd
<Plugin statsd>
  Host "127.0.0.1"
  Port "{self.port}"
  DeleteCounters true
  CounterSum true
</Plugin>
LoadPlugin write_graphite
<Plugin write_graphite>
  <Node "sink">
    Host "127.0.0.1"
    Port "{self.sink.port}"
    Protocol "tcp"
    EscapeCharacter "_"
  </Node>
</Plugin>
""")
        self.log = open(os.path.join(self.tmp, "collectd.log"), "a")
        self.proc = subprocess.Popen(["collectd", "-f", "-C", conf], stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        wait_udp(self.port, "collectd", self.proc)
        return self.port

    def delivered(self):
        return settle(self.sink.read, quiet=3, within=120, min_wait=2)

    def detail(self):
        return ""

    def finish(self, delivered):
        # write_graphite holds a partly filled send buffer until the next interval's values fill
        # it: a graceful stop (SIGTERM) flushes it.
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print("note: collectd did not stop on SIGTERM within 30 s", file=sys.stderr)
        return settle(self.sink.read, quiet=1, within=30)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill(); self.proc.wait()
        self.sink.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--systems", default="chouette,statsd,collectd")
    ap.add_argument("--modes", default="plain,tagged")
    ap.add_argument("--rates", default="10000,25000,50000,100000,150000,200000,300000,400000")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--contexts", type=int, default=10000)
    ap.add_argument("--full-ladder", action="store_true")
    ap.add_argument("--chouette-bin", help="the agent's binary (default: target/release/chouette)")
    ap.add_argument("--trace-drops", action="store_true", help="say when, into the blast, the kernel dropped datagrams")
    args = ap.parse_args()
    global CHOUETTE
    if args.chouette_bin:
        CHOUETTE = os.path.abspath(args.chouette_bin)
    rates = [int(r.replace("_", "")) for r in args.rates.split(",")]
    modes = args.modes.split(",")
    tmp = tempfile.mkdtemp(prefix="chouette-bench-dsd-")
    redis = None
    systems = []
    for name in args.systems.split(","):
        if name == "chouette":
            if not os.access(CHOUETTE, os.X_OK):
                print("note: chouette: no release build; skipped"); continue
            if redis is None:
                rport = free_port()
                redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                          "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
                wait_tcp(rport, "redis-server", redis)
            systems.append(lambda: Chouette(tmp, rport))
        elif name == "statsd":
            if not (shutil.which("node") and os.path.exists(STATSD_JS)):
                print(f"note: statsd: node or {STATSD_JS} missing; skipped"); continue
            systems.append(lambda: Statsd(tmp))
        elif name == "collectd":
            if not (shutil.which("collectd") and os.path.exists("/usr/lib/collectd/statsd.so")):
                print("note: collectd: collectd or its statsd plugin missing; skipped"); continue
            systems.append(lambda: Collectd(tmp))
        else:
            raise SystemExit(f"unknown system {name}")
    print(f"{args.contexts:,} contexts, one-line count datagrams (value 1), {args.duration:g} s per rate; "
          f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; net.core.rmem_max "
          f"{open('/proc/sys/net/core/rmem_max').read().strip()}, rmem_default {open('/proc/sys/net/core/rmem_default').read().strip()}")
    if "chouette" in args.systems.split(","):
        kind = subprocess.run(["file", "-b", CHOUETTE], capture_output=True, text=True).stdout.split(",")[:2]
        print(f"chouette: {os.path.relpath(CHOUETTE, ROOT) if CHOUETTE.startswith(ROOT) else CHOUETTE} ({','.join(kind).strip()})")
    print()
    print("| system | tagged | rate/s | sent | delivered | loss | kernel drops | peak RSS | CPU s | where |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    best = {}
    try:
        for make in systems:
            for mode in modes:
                tagged = mode == "tagged"
                for rate in rates:
                    run = make()
                    try:
                        port = run.start()
                        time.sleep(1)  # a server that just bound its socket is not yet warm (JIT, first allocations)
                        cpu0 = cpu_secs(run.pid)
                        trace = DropTrace(port) if args.trace_drops else None
                        sent, achieved, late_ms = blast(port, rate, args.duration, args.contexts, tagged)
                        bursts = trace.stop() if trace else ""
                        delivered = run.delivered()
                        drops = udp_drops(port)
                        cpu = cpu_secs(run.pid) - cpu0
                        rss = vm_hwm_kb(run.pid) / 1024
                        detail = run.detail()
                        delivered = run.finish(delivered)
                    finally:
                        run.stop()
                    loss = 1 - delivered / sent if sent else 0.0
                    if bursts:
                        detail = (detail + f" kernel drops (count@time into the blast): {bursts}").strip()
                    if achieved < rate * 0.99:
                        detail = (detail + f" (generator reached only {achieved:,.0f}/s)").strip()
                    print(f"| {run.name} | {'yes' if tagged else 'no'} | {rate:,} | {sent:,} | {delivered:,.0f} | {loss * 100:.3f} % "
                          f"| {drops:,} | {rss:.1f} MB | {cpu:.2f} | {detail} |", flush=True)
                    key = (run.name, tagged)
                    if loss < LOSSLESS and achieved >= rate * 0.99:
                        best[key] = max(best.get(key, 0), rate)
                    else:
                        best.setdefault(key, 0)
                    if loss > 0.05 and not args.full_ladder:
                        break
        print()
        print("| system | tagged | highest lossless rate (< 0.1 % lost) | Chouette's ÷ this |")
        print("|---|---|---:|---:|")
        for (name, tagged), rate in best.items():
            ours = best.get(("chouette", tagged))
            # A peer lossless at no rate of the ladder is lossless below the lowest one, if at all.
            ratio = f"{ours / rate:.1f}×" if ours and rate else (f"> {ours / rates[0]:.0f}×" if ours else "–")
            shown = f"{rate:,}/s" if rate else f"none (even {rates[0]:,}/s lost ≥ 0.1 %)"
            print(f"| {name} | {'yes' if tagged else 'no'} | {shown} | {ratio if name != 'chouette' else ''} |")
    finally:
        if redis is not None:
            redis.kill(); redis.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
