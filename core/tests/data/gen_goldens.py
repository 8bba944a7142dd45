#!/usr/bin/env python3
"""Regenerates the golden files with CPython's json module, as the original Chouette-IoT wrote them.

Run from this directory: python3 gen_goldens.py. Every file holds one record and a final newline.
"""
import json


def put(name, text):
    with open(name, "w") as f:
        f.write(text + "\n")


def raw(name, record):
    put(f"raw_{name}.json", json.dumps(record))


# Raw metrics, as the Python client writes them (chouette_iot_client: key order metric, type,
# value, timestamp, tags) and a few shapes other writers produce.
raw("int_ts", {"metric": "my.count", "type": "count", "value": 2, "timestamp": 1600000000, "tags": {"k": "v"}})
raw("float_ts", {"metric": "my.gauge", "type": "gauge", "value": 0.25, "timestamp": 1600000000.25, "tags": {"k": "v"}})
raw("no_tags", {"metric": "my.rate", "type": "rate", "value": 3, "timestamp": 1600000000.5})
raw("null_tags", {"metric": "my.hist", "type": "histogram", "value": 12.5, "timestamp": 1600000001, "tags": None})
raw("empty_tags", {"metric": "my.count", "type": "count", "value": 1, "timestamp": 1600000002.125, "tags": {}})
raw("set_strings", {"metric": "users", "type": "set", "value": ["Alice", "Bob", "Alice"], "timestamp": 1600000003, "tags": {"app": "web"}})
raw("set_mixed", {"metric": "ids", "type": "set", "value": [1, "2", 3.5, "[1, 2]"], "timestamp": 1600000004, "tags": {}})
raw("escapes_unicode", {"metric": "caf\u00e9.\"quoted\"\\", "type": "distribution", "value": -1.5e-05, "timestamp": 1600000005, "tags": {"m\u00fcnchen": "\U0001f989\n\t", "path": "a/b"}})
raw("tag_scalars", {"metric": "t", "type": "gauge", "value": 1, "timestamp": 1600000006, "tags": {"i": 1, "f": 1.0, "t": True, "n": None}})
raw("extra_keys", {"metric": "x", "type": "count", "value": 1, "timestamp": 1600000007, "tags": {}, "host": "h", "extra": {"a": [1, 2, {"b": None}]}})
raw("keys_reordered", {"tags": {"k": "v"}, "timestamp": 1600000008, "value": 7, "type": "gauge", "metric": "reordered"})
put("raw_compact.json", '{"metric":"c","type":"count","value":1,"timestamp":1}')

# Poison records: each refused with one distinct reason.
put("raw_poison_not_json.json", "Not a JSON...")
put("raw_poison_array.json", json.dumps([{"metric": "m", "type": "count", "value": 1, "timestamp": 1}]))
put("raw_poison_missing_field.json", json.dumps({"msg": "Not a metric"}))
put("raw_poison_missing_timestamp.json", json.dumps({"metric": "m", "type": "count", "value": 1}))
put("raw_poison_nan_value.json", json.dumps({"metric": "m", "type": "gauge", "value": float("nan"), "timestamp": 1}))
put("raw_poison_infinity_ts.json", json.dumps({"metric": "m", "type": "gauge", "value": 1, "timestamp": float("inf")}))
put("raw_poison_string_value.json", json.dumps({"metric": "m", "type": "count", "value": "3", "timestamp": 1}))
put("raw_poison_list_value.json", json.dumps({"metric": "m", "type": "count", "value": [1, 2], "timestamp": 1}))
put("raw_poison_set_not_list.json", json.dumps({"metric": "m", "type": "set", "value": 1, "timestamp": 1}))
put("raw_poison_set_nested.json", json.dumps({"metric": "m", "type": "set", "value": [[1]], "timestamp": 1}))
put("raw_poison_unknown_type.json", json.dumps({"metric": "m", "type": "timer", "value": 1, "timestamp": 1}))
put("raw_poison_negative_ts.json", json.dumps({"metric": "m", "type": "count", "value": 1, "timestamp": -5}))
put("raw_poison_string_ts.json", json.dumps({"metric": "m", "type": "count", "value": 1, "timestamp": "1"}))
put("raw_poison_empty_name.json", json.dumps({"metric": "", "type": "count", "value": 1, "timestamp": 1}))
put("raw_poison_long_name.json", json.dumps({"metric": "n" * 201, "type": "count", "value": 1, "timestamp": 1}))
put("raw_poison_too_many_tags.json", json.dumps({"metric": "m", "type": "count", "value": 1, "timestamp": 1, "tags": {f"k{i}": "v" for i in range(33)}}))
put("raw_poison_long_tag.json", json.dumps({"metric": "m", "type": "count", "value": 1, "timestamp": 1, "tags": {"k": "v" * 200}}))
put("raw_poison_object_tag.json", json.dumps({"metric": "m", "type": "count", "value": 1, "timestamp": 1, "tags": {"k": {"a": 1}}}))
put("raw_poison_trailing.json", json.dumps({"metric": "m", "type": "count", "value": 1, "timestamp": 1}) + " {}")


# Wrapped metrics: WrappedMetric.asdict() key order, tags sorted, interval only when truthy.
def wrapped(name, metric, tags, ts, value, type_, interval=None):
    d = {"metric": metric, "tags": sorted(tags), "points": [[ts, value]], "type": type_}
    if interval:
        d["interval"] = interval
    put(f"wrapped_{name}.json", json.dumps(d))


wrapped("count", "req", ["ep:a"], 1795310771.0, 1, "count", 10)
wrapped("gauge", "req.avg", ["ep:a", "env:test"], 1795310771.0, 1.875, "gauge")
wrapped("rate", "req.count", ["bare"], 1795310770.5, 0.6, "rate", 10)
wrapped("escapes", "caf\u00e9\"", ["m\u00fcnchen:\U0001f989", "q:a\\b\n"], 1600000000.25, -1e-05, "gauge")
put("wrapped_poison_dict_tags.json", json.dumps({"metric": "m", "tags": {"a": "b"}, "points": [[1.0, 1]], "type": "count"}))
put("wrapped_poison_histogram.json", json.dumps({"metric": "m", "tags": [], "points": [[1.0, 1]], "type": "histogram"}))
put("wrapped_poison_not_object.json", json.dumps([["m"]]))


# Logs: the client's record, and what the original sender posts for it
# (GLOBAL_TAGS ["env:test", "device:pi"], HOST "myhost").
GLOBAL_TAGS = ["env:test", "device:pi"]


def log(name, record):
    put(f"log_{name}.json", json.dumps(record))
    out = dict(record)
    tags = out.get("ddtags", [])
    if isinstance(tags, str):
        tags = [tags] if tags else []  # the original crashes here; we join it as a tag list
    out["ddtags"] = ",".join(tags + GLOBAL_TAGS)
    out["host"] = "myhost"
    put(f"log_{name}.intake.json", json.dumps(out))


log("basic", {"date": "2026-11-22T01:25:26.038424+00:00", "ddsource": "svc", "ddtags": ["a:b"], "level": "INFO", "message": {"msg": "hello %s"}, "service": "svc"})
log("no_micros", {"date": "2012-12-21T00:00:00+00:00", "ddsource": "test", "ddtags": [], "level": "INFO", "message": {"msg": "Hello, world!"}, "service": "test"})
log("extras", {"date": "2020-09-13T12:26:40.123456+00:00", "ddsource": "svc", "ddtags": ["k:v", "caf\u00e9"], "level": "ERROR", "message": {"msg": "boom \u00e9"}, "service": "svc", "exc_info": "Traceback (most recent call last):\n  File \"x.py\"", "host": "old", "taskName": None, "n": [1, 2.5, {"x": True}]})
log("string_ddtags", {"date": "2020-09-13T12:26:40.5+00:00", "ddsource": "svc", "ddtags": "a:b,c:d", "level": "INFO", "message": {"msg": "hi"}, "service": "svc"})
put("log_poison_no_date.json", json.dumps({"ddsource": "svc", "ddtags": [], "level": "INFO", "message": {"msg": "hi"}, "service": "svc"}))
put("log_poison_bad_date.json", json.dumps({"date": "2012-12-21 00:00:00", "ddtags": []}))
put("log_poison_list_ddtags.json", json.dumps({"date": "2012-12-21T00:00:00+00:00", "ddtags": [1, 2]}))
put("log_poison_not_object.json", json.dumps("So wrong!"))


# Raw metrics as the real Python client renders them (chouette_iot_client's _prepare_metric, then
# json.dumps as RedisStorage.store_metric does): encode(x) == golden in core/tests/wire_records.rs.
# Skipped, with a note, where the client is not installed (pip install chouette-iot-client).
try:
    from chouette_iot_client import ChouetteClient
except ImportError:
    ChouetteClient = None
    print("chouette_iot_client not installed: raw_client_*.json left as they are")


def client(name, type_, metric, value, timestamp, tags):
    if ChouetteClient is None:
        return
    record = ChouetteClient._prepare_metric(metric=metric, type=type_, value=value, timestamp=timestamp, tags=tags)
    put(f"raw_client_{name}.json", json.dumps(record))


client("count", "count", "my.count", 2, 1600000000.25, {"k": "v"})
client("gauge_float", "gauge", "sensor.temp", 0.1, 1763780437.123456, {"env": "prod", "host": "pi-kitchen"})
client("rate_no_tags", "rate", "req.rate", 1.5e-05, 1763780437.5, None)
client("histogram_exponent", "histogram", "big", 1e16, 1763780437.000001, {})
client("negative_int", "count", "delta", -9007199254740993, 1763780437.0, {"sign": "minus"})
client("subsecond_ts", "gauge", "precise", 2.0, 1763780437.1234567, {})
client("set_members", "set", "users", ["Alice", "Bob", 3, 2.5, "caf\u00e9"], 1763780438.25, {"app": "web"})
client("histogram_samples", "histogram", "latency", [1, 2.5, 1000, -0.125], 1763780439.75, {"route": "/pay"})
client("escapes", "distribution", "caf\u00e9.\"quoted\"\\", -7, 1763780440.001,
       {"m\u00fcnchen": "\U0001f989\n\t", "path": "a/b", "ctl": "\x01\x7f"})
