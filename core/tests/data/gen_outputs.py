#!/usr/bin/env python3
"""Regenerates the golden files of the InfluxDB line protocol and OpenTSDB /api/put encoders.

Run from this directory: python3 gen_outputs.py. Read by core/tests/wire_outputs.rs.

This is an independent implementation of the rules in core/src/wire/line.rs and opentsdb.rs
(written from the documented rules, not from the Rust code): numbers as json.dumps/repr write
them, the apptuit and prometheus sanitize modes with CPython's `re` (Unicode `\\w`), as
apptuit-py 2.4.2's apptuit/utils.py does. Each case is a wrapped record (a wrapped_*.json golden,
some written here), global tags and a host; it writes out_<case>.line and
out_<case>.<mode>.opentsdb.json (exactly the encoder's output, no final newline added), and
outputs.cases.json, the list the test walks.
"""
import json
import math
import re


def put(name, text, newline=True):
    with open(name, "w", encoding="utf-8") as f:
        f.write(text + ("\n" if newline else ""))


# --- inputs (wrapped records, as the original agent stores them, plus `host` where a collector
# plugin sets one)
INPUTS = {
    "wrapped_histogram.json": {"metric": "req.latency.95percentile", "tags": ["ep:a", "env:test"], "points": [[1795310770.0, 21.5]], "type": "gauge"},
    "wrapped_histogram_count.json": {"metric": "req.latency.count", "tags": ["ep:a"], "points": [[1795310770.0, 0.4]], "type": "rate", "interval": 10},
    "wrapped_special.json": {
        "metric": "cpu load,total=1 \"x\"",
        "tags": ["a b:c d", "k,1:v,1", "e=q:x=y", "q\"t:\"v\"", "back\\slash:C:\\dir\\", "path:a\\,b"],
        "points": [[1795310771.0, 3]],
        "type": "gauge",
    },
    "wrapped_dups.json": {
        "metric": "dups",
        "tags": ["z:1", "a:first", "bare", "a:second", "empty:", ":novalue", "host:fromtag"],
        "points": [[1795310771.0, -2.5]],
        "type": "count",
        "interval": 10,
    },
    "wrapped_record_host.json": {"metric": "rh", "tags": ["host:tag", "k:v"], "points": [[1795310771.0, 1]], "type": "gauge", "host": "rechost"},
    "wrapped_multi.json": {
        "metric": "multi",
        "tags": ["k:v"],
        "points": [[1795310770.9, 3], [1795310771.0, 1e-05], [1795310772.5, 1.5e16], [1795310773.0, -0.0]],
        "type": "gauge",
    },
    "wrapped_unicode.json": {
        "metric": "Température.salle 1/β",
        "tags": ["Zone-é:pièce 2", "9lives:y", "a..b__c:z", "日本:語"],
        "points": [[1795310771.0, 19.25]],
        "type": "gauge",
    },
    "wrapped_newlines.json": {"metric": "#hash\nname\r", "tags": ["k\nx:v\ry", "time:t"], "points": [[1.0, 1]], "type": "gauge"},
    "wrapped_underscore.json": {"metric": "_internal", "tags": ["_k:v"], "points": [[1.0, 2]], "type": "gauge"},
}

# name, input file, global tags, host, OpenTSDB sanitize modes
CASES = [
    ("count", "wrapped_count.json", ["env:test", "device:pi"], "myhost", ["none"]),
    ("gauge", "wrapped_gauge.json", [], None, ["none"]),
    ("rate", "wrapped_rate.json", [], None, ["none"]),
    ("escapes", "wrapped_escapes.json", [], None, ["none", "apptuit", "prometheus"]),
    ("histogram", "wrapped_histogram.json", ["env:prod"], "myhost", ["none"]),
    ("histogram_count", "wrapped_histogram_count.json", [], "myhost", ["none"]),
    ("special", "wrapped_special.json", [], None, ["none", "apptuit", "prometheus"]),
    ("dups", "wrapped_dups.json", ["a:global", "g:1", "z:2", "host:globalhost"], None, ["none"]),
    ("dups_host", "wrapped_dups.json", ["a:global", "g:1", "z:2", "host:globalhost"], "override", ["none"]),
    ("record_host", "wrapped_record_host.json", [], None, ["none"]),
    ("record_host_override", "wrapped_record_host.json", [], "arg", ["none"]),
    ("multi", "wrapped_multi.json", [], None, ["none"]),
    ("unicode", "wrapped_unicode.json", ["ünï:cödé"], None, ["none", "apptuit", "prometheus"]),
    ("newlines", "wrapped_newlines.json", [], None, ["none"]),
    ("underscore", "wrapped_underscore.json", [], None, ["none", "prometheus"]),
]


def number(v):
    """An integral value below 2^53 as an integer, anything else as repr (Python's float)."""
    v = float(v)
    if v == int(v) and abs(v) < 2**53 and not (v == 0 and math.copysign(1, v) < 0):
        return str(int(v))
    return repr(v)


def tags_of(rec, extra, host):
    """(key, value) candidates in order: the record's tags, the globals, then host."""
    host = host or rec.get("host")
    out = []
    for tag in list(rec.get("tags", [])) + list(extra):
        key, sep, value = tag.partition(":")
        if not sep or not value or not key:
            continue
        if host and key == "host":
            continue
        out.append((key, value))
    if host:
        out.append(("host", host))
    return out


def select(candidates, written_key):
    """Sorted by the written key (code points = UTF-8 bytes), the first occurrence winning."""
    seen = {}
    for key, value in candidates:
        seen.setdefault(written_key(key), (key, value))
    return [seen[k] for k in sorted(seen)]


# --- InfluxDB line protocol
def backslash_to_underscore(text):
    """A backslash at the end or before a space (newlines are spaces by now) becomes `_`."""
    return "".join("_" if c == "\\" and text[i + 1 : i + 2] in ("", " ") else c for i, c in enumerate(text))


def line_key(key):
    text = backslash_to_underscore(key.replace("\n", " ").replace("\r", " "))
    return text + "_" if key == "time" else text


def line_tag_part(text, is_key):
    out = []
    for i, c in enumerate(text):
        if c in ",= ":
            out.append("\\" + c)
        elif c in "\n\r":
            out.append("\\ ")
        elif c == "\\" and text[i + 1 : i + 2] in ("", " ", "\n", "\r"):
            out.append("_")
        else:
            out.append(c)
    return "".join(out) + ("_" if is_key and text == "time" else "")


def line_measurement(name):
    out = []
    for i, c in enumerate(name):
        nxt = name[i + 1] if i + 1 < len(name) else None
        if c in ", \n\r":
            out.append("\\ " if c != "," else "\\,")
        elif c in "#\t\0" and i == 0:
            out.append("_")
        elif c == "\\" and (nxt is None or nxt in ', ="\n\r'):
            out.append("_")
        else:
            out.append(c)
    return "".join(out)


def lines(rec, extra, host):
    tags = select(tags_of(rec, extra, host), line_key)
    tag_text = "".join(f",{line_tag_part(k, True)}={line_tag_part(v, False)}" for k, v in tags)
    return "".join(
        f"{line_measurement(rec['metric'])}{tag_text} value={number(v)} {math.floor(ts)}\n" for ts, v in rec["points"]
    )


# --- OpenTSDB /api/put, sanitize modes as apptuit-py 2.4.2 defines them
def sanitize(mode, name):
    if mode == "none":
        return name
    if mode == "apptuit":
        name = re.sub(r"[^-\w_./]", "_", name)
    else:
        if name[0] in "0123456789":
            name = "_" + name
        name = "".join(c if (c.isascii() and c.isalnum()) or c == "_" else "_" for c in name)
    return re.sub("_+", "_", name)


def opentsdb(rec, extra, host, mode):
    tags = select(tags_of(rec, extra, host), lambda k: sanitize(mode, k))
    if not tags:
        return None
    objects = []
    for ts, v in rec["points"]:
        value = int(number(v)) if re.fullmatch(r"-?\d+", number(v)) else float(v)
        obj = {
            "metric": sanitize(mode, rec["metric"]),
            "timestamp": math.floor(ts),
            "value": value,
            "tags": {sanitize(mode, k): val for k, val in tags},
        }
        objects.append(json.dumps(obj))
    return ", ".join(objects)


def main():
    for name, rec in INPUTS.items():
        put(name, json.dumps(rec))
    manifest = []
    for name, source, extra, host, modes in CASES:
        with open(source, encoding="utf-8") as f:
            rec = json.loads(f.read())
        put(f"out_{name}.line", lines(rec, extra, host), newline=False)
        entry = {"name": name, "input": source, "extra_tags": extra, "host": host, "line": f"out_{name}.line", "opentsdb": {}}
        for mode in modes:
            text = opentsdb(rec, extra, host, mode)
            if text is None:
                entry["opentsdb"][mode] = {"error": "no_tags"}
            else:
                put(f"out_{name}.{mode}.opentsdb.json", text, newline=False)
                entry["opentsdb"][mode] = {"file": f"out_{name}.{mode}.opentsdb.json"}
        manifest.append(entry)
    put("outputs.cases.json", json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
