#!/usr/bin/env python3
"""Host collection side by side: the agent against collectd 5.12, same machine, same wall time.

Both collect this machine's host metrics every INTERVAL (10 s) for DURATION seconds, at the same
time:

- the agent (`COLLECTOR_PLUGINS='["host"]'`, every group: cpu, fs, la, ram, network), with the
  embedded store (no Redis) in a temporary state directory, sending to a VictoriaMetrics started
  on a free loopback port as its Datadog backend (`RELEASE_INTERVAL` = INTERVAL): per interval it
  captures, commits the points durably to its outbox, ships them (gzip, HTTP) and deletes them
  once acknowledged, plus its aggregation and self-metrics ticks. The DogStatsD listener is off
  (`DOGSTATSD_PORT=0`): this measures host collection (`--dogstatsd` leaves it on, on a free port).
- collectd (`collectd -f`, a generated config: `Interval` INTERVAL, plugins cpu, memory, df,
  load, interface, csv into a temporary directory): per interval it reads, and appends lines to
  local csv files (no fsync, nothing shipped).

Measured from /proc after WARMUP seconds (the start-up and first intervals are not steady):
CPU = task-clock of `perf stat -p` over the window when perf is installed (every thread, short-lived
ones included: the most precise), utime + stime of /proc/PID/stat (every thread, exited ones
included, but in clock ticks of 10 ms, and adjusted by the kernel), and the sum of
/proc/PID/task/*/schedstat run times (nanoseconds, live threads) as a finer check; RSS: VmRSS
sampled every second (median and largest), VmHWM at the end (the peak since start). Values per
interval: the agent's from VictoriaMetrics (samples with a timestamp in the window, host and
self-metrics apart), collectd's from its csv lines in the window (one value per data source).

Usage: scripts/bench-host.sh [--duration 120] [--warmup 25] [--interval 10]
       [--dogstatsd] [--chouette-bin PATH] [--keep]
"""
import argparse, glob, json, os, shutil, signal, socket, statistics, subprocess, tempfile, time
import urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
CLK = os.sysconf("SC_CLK_TCK")
COLLECTD_PLUGINS = ["cpu", "memory", "df", "load", "interface"]


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port


def wait_http(url, what, proc, within=30):
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read(); return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"{what} exited ({proc.returncode}) before answering {url}")
            time.sleep(0.05)
    raise SystemExit(f"{what}: {url} does not answer within {within} s")


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def run_ns(pid):
    """Sum of the live threads' run times (schedstat, ns) and the thread count."""
    total, threads = 0, 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0]); threads += 1
        except (OSError, ValueError):
            pass
    return total, threads


def switches(pid):
    """Context switches of every live thread (voluntary + involuntary): the wake-ups."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Probe:
    """What /proc says about one process over the measured window."""

    def __init__(self, name, proc):
        self.name, self.proc, self.rss, self.anon, self.file = name, proc, [], [], []

    def start(self, tmp, duration):
        pid = self.proc.pid
        self.perf_out, self.perf = os.path.join(tmp, f"perf-{self.name}.csv"), None
        if shutil.which("perf"):
            # Every thread, short-lived ones included (the agent's aggregator is built on one).
            self.perf = subprocess.Popen(["perf", "stat", "-e", "task-clock", "-x", ",", "-o", self.perf_out, "-p", str(pid),
                                          "sleep", str(duration)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.t0, self.ticks0, (self.ns0, _), self.sw0 = time.time(), cpu_ticks(pid), run_ns(pid), switches(pid)

    def sample(self):
        pid = self.proc.pid
        self.rss.append(status_kb(pid, "VmRSS"))
        self.anon.append(status_kb(pid, "RssAnon"))
        self.file.append(status_kb(pid, "RssFile"))

    def stop(self):
        pid = self.proc.pid
        self.t1, self.ticks1, (self.ns1, self.threads), self.sw1 = time.time(), cpu_ticks(pid), run_ns(pid), switches(pid)
        self.hwm = status_kb(pid, "VmHWM")
        self.perf_ms = None
        if self.perf is not None:
            self.perf.wait()
            try:
                with open(self.perf_out) as f:
                    for line in f:
                        fields = line.strip().split(",")
                        if len(fields) > 2 and fields[2] == "task-clock":
                            self.perf_ms = float(fields[0])
            except (OSError, ValueError):
                pass


def collectd_config(tmp, interval):
    csv = os.path.join(tmp, "csv")
    os.makedirs(csv)
    lines = [f'Hostname "bench"', "FQDNLookup false", f'BaseDir "{tmp}"', f'PIDFile "{tmp}/collectd.pid"',
             f"Interval {interval}", 'TypesDB "/usr/share/collectd/types.db"']
    lines += [f"LoadPlugin {p}" for p in COLLECTD_PLUGINS + ["csv"]]
    lines += ["<Plugin csv>", f'  DataDir "{csv}"', "  StoreRates false", "</Plugin>"]
    path = os.path.join(tmp, "collectd.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path, csv


def collectd_values(csv, t0, t1):
    """Values collectd wrote with a timestamp in [t0, t1): per csv line, one per data source."""
    values = 0
    for path in glob.glob(os.path.join(csv, "**", "*-*"), recursive=True):
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            next(f, None)  # the header: epoch,value[,value...]
            for line in f:
                fields = line.strip().split(",")
                try:
                    stamp = float(fields[0])
                except ValueError:
                    continue
                if t0 <= stamp < t1:
                    values += len(fields) - 1
    return values


def vm_values(port, t0, t1):
    """(host values, self-metric values) VictoriaMetrics holds with a timestamp in [t0, t1)."""
    base = f"http://127.0.0.1:{port}"
    urllib.request.urlopen(f"{base}/internal/force_flush", timeout=10).read()
    query = urllib.parse.urlencode({"match[]": '{__name__!=""}', "start": f"{t0 - 300:.3f}", "end": f"{t1 + 300:.3f}"})
    body = urllib.request.urlopen(f"{base}/api/v1/export?{query}", timeout=30).read().decode()
    host = own = 0
    for line in body.splitlines():
        row = json.loads(line)
        n = sum(1 for ms in row["timestamps"] if t0 <= ms / 1000 < t1)
        if row["metric"]["__name__"].startswith("chouette."):
            own += n
        else:
            host += n
    return host, own


def describe_binary(path):
    try:
        kind = subprocess.run(["file", "-b", path], capture_output=True, text=True).stdout.strip()
    except OSError:
        kind = ""
    return "static musl build" if "static" in kind else "glibc build" if kind else "build"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=120, help="measured seconds, after the warm-up")
    ap.add_argument("--warmup", type=float, default=25, help="seconds before measuring")
    ap.add_argument("--interval", type=int, default=10, help="collection interval of both, seconds")
    ap.add_argument("--chouette-bin", default=os.path.join(TARGET, "release", "chouette"))
    ap.add_argument("--dogstatsd", action="store_true",
                    help="leave the agent's DogStatsD listener on (on a free UDP port), as by default")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, csv, store)")
    args = ap.parse_args()
    collectd_bin = shutil.which("collectd") or ("/usr/sbin/collectd" if os.path.exists("/usr/sbin/collectd") else None)
    if collectd_bin is None:
        raise SystemExit("collectd is missing: apt-get install -y collectd-core")
    if shutil.which("victoria-metrics") is None:
        raise SystemExit("victoria-metrics is missing: scripts/install-test-deps.sh")
    if not os.access(args.chouette_bin, os.X_OK):
        raise SystemExit(f"{args.chouette_bin}: no agent binary (scripts/bench-host.sh builds it)")

    tmp = tempfile.mkdtemp(prefix="chouette-bench-host-")
    vport = free_port()
    procs = []
    try:
        vm = subprocess.Popen(["victoria-metrics", f"-storageDataPath={tmp}/vm", f"-httpListenAddr=127.0.0.1:{vport}",
                               "-retentionPeriod=100y", "-loggerLevel=ERROR", "-search.latencyOffset=0s"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(vm)
        wait_http(f"http://127.0.0.1:{vport}/health", "victoria-metrics", vm)
        conf, csv = collectd_config(tmp, args.interval)
        every = str(args.interval)
        env = {"PATH": os.environ["PATH"], "CHOUETTE_STATE_DIR": os.path.join(tmp, "state"),
               "DATADOG_URL": f"http://127.0.0.1:{vport}/datadog/api", "COLLECTOR_PLUGINS": '["host"]',
               "HOST_COLLECTOR_METRICS": '["cpu","fs","la","ram","network"]', "CAPTURE_INTERVAL": every,
               "RELEASE_INTERVAL": every, "AGGREGATE_INTERVAL": every,
               "DOGSTATSD_PORT": str(free_port()) if args.dogstatsd else "0",
               "HOST": "bench", "LOG_LEVEL": "WARNING"}
        with open(os.path.join(tmp, "agent.log"), "w") as agent_log, open(os.path.join(tmp, "collectd.log"), "w") as cd_log:
            agent = subprocess.Popen([args.chouette_bin], env=env, stdout=agent_log, stderr=subprocess.STDOUT)
            procs.append(agent)
            collectd = subprocess.Popen([collectd_bin, "-f", "-C", conf], stdout=cd_log, stderr=subprocess.STDOUT)
            procs.append(collectd)
            time.sleep(args.warmup)
            for p, name in ((agent, "the agent"), (collectd, "collectd")):
                if p.poll() is not None:
                    raise SystemExit(f"{name} exited ({p.returncode}) during the warm-up; see --keep's logs")
            probes = [Probe("chouette", agent), Probe("collectd", collectd)]
            for probe in probes:
                probe.start(tmp, args.duration)
            t0 = time.time()
            while time.time() - t0 < args.duration - 0.5:
                time.sleep(1)
                for probe in probes:
                    probe.sample()
            for probe in probes:
                probe.stop()
            t1 = time.time()
            # Let the last interval's points reach VictoriaMetrics (the next release tick).
            time.sleep(args.interval + 3)
        host, own = vm_values(vport, t0, t1)
        cd_values = collectd_values(csv, t0, t1)
        intervals = (t1 - t0) / args.interval
        rows = {}
        for probe in probes:
            rows[probe.name] = {
                "cpu_ms": (probe.ticks1 - probe.ticks0) * 1000 / CLK / intervals,
                "perf_ms": probe.perf_ms / intervals if probe.perf_ms is not None else None,
                "run_ms": (probe.ns1 - probe.ns0) / 1e6 / intervals,
                "rss": statistics.median(probe.rss) / 1024, "anon": statistics.median(probe.anon) / 1024,
                "file": statistics.median(probe.file) / 1024, "rss_max": max(probe.rss) / 1024, "hwm": probe.hwm / 1024,
                "threads": probe.threads, "wakeups": (probe.sw1 - probe.sw0) / intervals,
            }
        rows["chouette"]["values"] = host / intervals
        rows["chouette"]["own"] = own / intervals
        rows["collectd"]["values"] = cd_values / intervals
        rows["collectd"]["own"] = 0
        a, c = rows["chouette"], rows["collectd"]
        ratio = lambda key: f"{a[key] / c[key]:.2f}" if c[key] else "-"
        print(f"host collection every {args.interval} s, {t1 - t0:.0f} s measured after {args.warmup:.0f} s of warm-up "
              f"({intervals:.1f} intervals); agent: {describe_binary(args.chouette_bin)} {args.chouette_bin}, "
              f"DogStatsD listener {'on' if args.dogstatsd else 'off'}")
        print()
        print("| per interval | chouette | collectd | chouette / collectd |")
        print("|---|---:|---:|---:|")
        print(f"| what it does | captures, commits to the embedded store (fsync), ships to VictoriaMetrics, deletes once acknowledged "
              f"| reads, appends to local csv files | |")
        if a["perf_ms"] is not None and c["perf_ms"] is not None:
            print(f"| CPU ms (perf task-clock, every thread) | {a['perf_ms']:.2f} | {c['perf_ms']:.2f} | {a['perf_ms'] / c['perf_ms']:.2f} |")
        print(f"| CPU ms (utime+stime, every thread; ±{1000 / CLK / intervals:.1f}) | {a['cpu_ms']:.2f} | {c['cpu_ms']:.2f} | {ratio('cpu_ms')} |")
        print(f"| CPU ms (schedstat: live threads only, finer) | {a['run_ms']:.2f} | {c['run_ms']:.2f} | {ratio('run_ms')} |")
        print(f"| RSS MB, steady (median VmRSS) | {a['rss']:.1f} | {c['rss']:.1f} | {ratio('rss')} |")
        print(f"| of which anonymous (RssAnon: heap, stacks) | {a['anon']:.1f} | {c['anon']:.1f} | {ratio('anon')} |")
        print(f"| of which file-backed (RssFile: code, libraries) | {a['file']:.1f} | {c['file']:.1f} | {ratio('file')} |")
        print(f"| RSS MB, largest sampled VmRSS | {a['rss_max']:.1f} | {c['rss_max']:.1f} | {ratio('rss_max')} |")
        print(f"| RSS MB, peak since start (VmHWM) | {a['hwm']:.1f} | {c['hwm']:.1f} | {ratio('hwm')} |")
        print(f"| values (host) | {a['values']:.1f} | {c['values']:.1f} | {ratio('values')} |")
        print(f"| values (own self-metrics) | {a['own']:.1f} | - | |")
        print(f"| threads | {a['threads']} | {c['threads']} | |")
        print(f"| context switches (wake-ups) | {a['wakeups']:.1f} | {c['wakeups']:.1f} | {ratio('wakeups')} |")
        if not args.keep:
            return
        print(f"\nkept: {tmp}")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill(); p.wait()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
