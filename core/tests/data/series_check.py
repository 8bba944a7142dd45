"""Checks the series golden files against what the original Python sender would post.

Run from this folder: `python3 series_check.py`. It builds the original's body for the same
wrapped records (`json.dumps({"series": [...]})`, one entry per point, tags + GLOBAL_TAGS) and
checks that series_basic.json and series_split_{1,2}.json hold the same points, in order, once
exact duplicate tags are collapsed (the one intended difference besides key order and grouping).
"""
import json

G = ["env:test", "device:pi"]
RECS = [
    ("req", ["ep:a"], 1795310770.0, 1, "count", 10, "myhost"),
    ("req", ["ep:a"], 1795310780.0, 3, "count", 10, "myhost"),
    ("req.latency.avg", ["ep:a"], 1795310770.0, 0.123, "gauge", None, "myhost"),
    ("req.latency.count", ["ep:a"], 1795310770.0, 0.8, "rate", 10, "myhost"),
    ("req.latency.95percentile", ["ep:a"], 1795310770.0, 1e-05, "gauge", None, "myhost"),
    ("température.cpu", ["lieu:café", 'q:say "hi"'], 1795310771.25, -21.5, "gauge", None, "myhost"),
    ("disk.free", ["env:test"], 1795310770.0, 123456789, "gauge", None, "myhost"),
    ("disk.free", ["env:test"], 1795310780.0, 123456000.5, "gauge", None, "myhost"),
    ("jobs.done", [], 1795310770.0, 7, "count", None, "myhost"),
    ("jobs.rate", [], 1795310770.0, 0.7, "rate", 0, "myhost"),
    ("chouette.dispatched", [], 1795310790.0, 2, "count", 60, None),
]


def original_body():
    series = []
    for metric, tags, ts, value, kind, interval, host in RECS:
        record = {"metric": metric, "tags": tags + G, "points": [[ts, value]], "type": kind}
        if interval:
            record["interval"] = interval
        if host:
            record["host"] = host
        series.append(record)
    return json.dumps({"series": series})


def flat(doc, dedupe=False):
    out = []
    for entry in doc["series"]:
        tags = entry["tags"]
        if dedupe:
            tags = list(dict.fromkeys(tags))
        for ts, value in entry["points"]:
            out.append((entry["metric"], tuple(tags), entry["type"], entry.get("interval"),
                        entry.get("host"), float(ts), float(value)))
    return out


def load(name):
    with open(name, "rb") as f:
        return json.loads(f.read())


basic = flat(load("series_basic.json"))
assert basic == flat(json.loads(original_body()), dedupe=True)
assert flat(load("series_split_1.json")) + flat(load("series_split_2.json")) == basic
print(f"ok: {len(basic)} points match the original sender's body")
