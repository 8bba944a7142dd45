//! The agent as a hub: Datadog, InfluxDB and OpenTSDB outputs at once, with real servers
//! (VictoriaMetrics for Datadog and, through its OpenTSDB listener, OpenTSDB; Debian's InfluxDB
//! 1.6), each output with its own outbox (`chouette:metrics:wrapped`, `.influxdb`, `.opentsdb`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use chouette_tests::agent_binary;
use chouette_tests::{free_port, wait_until, write_raw, Agent, InfluxServer, RedisServer, VictoriaMetrics};
use redis::Commands;

const DB: &str = "chouette";

fn bucket_base() -> f64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    ((now / 10.0).floor() * 10.0) - 600.0
}

fn zcard(con: &mut redis::Connection, key: &str) -> u64 {
    con.zcard(key).expect("zcard")
}

fn env(redis: &RedisServer) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", redis.url()),
        ("GLOBAL_TAGS", r#"["env:hub"]"#.into()),
        ("HOST", "hub-host".into()),
        ("AGGREGATE_INTERVAL", "10".into()),
        ("RELEASE_INTERVAL", "1".into()),
        ("SEND_SELF_METRICS", "false".into()),
        ("LOG_LEVEL", "DEBUG".into()),
    ]
}

/// Every point of `measurement` in InfluxDB as `(tags "k=v,...", time s, value)`.
fn influx_points(influx: &InfluxServer, measurement: &str) -> Vec<(String, i64, f64)> {
    let q = format!("SELECT * FROM \"{measurement}\"");
    let answer = influx.query(DB, &q);
    let mut out = Vec::new();
    let Some(series) = answer["results"][0]["series"].as_array() else { return out };
    for s in series {
        let columns: Vec<&str> =
            s["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        for row in s["values"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            let mut tags = Vec::new();
            let (mut time, mut value) = (0, f64::NAN);
            for (c, v) in columns.iter().zip(row) {
                match *c {
                    "time" => time = v.as_i64().unwrap(),
                    "value" => value = v.as_f64().unwrap(),
                    tag => {
                        if let Some(v) = v.as_str() {
                            tags.push(format!("{tag}={v}"));
                        }
                    }
                }
            }
            out.push((tags.join(","), time, value));
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

/// Points in InfluxDB across `measurements`.
fn influx_count(influx: &InfluxServer, measurements: &[String]) -> usize {
    measurements.iter().map(|m| influx_points(influx, m).len()).sum()
}

fn python_client(redis: &RedisServer, script: &str) {
    let status = Command::new("python3")
        .args(["-c", script])
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .status()
        .expect("python3");
    assert!(
        status.success(),
        "the Python chouette-iot-client wrote its records (scripts/install-test-deps.sh)"
    );
}

#[test]
fn every_type_reaches_datadog_influxdb_and_opentsdb_exactly() {
    let redis = RedisServer::start();
    let dd = VictoriaMetrics::start();
    let tsdb = VictoriaMetrics::start_with_opentsdb();
    let influx = InfluxServer::start();
    influx.create_database(DB);
    let base = bucket_base();
    python_client(
        &redis,
        &format!(
            r#"
from chouette_iot_client import ChouetteClient as C
futures = [
    C.count("hub.count", 2, timestamp={b1}, tags={{"ep": "a b"}}),
    C.count("hub.count", 3, timestamp={b2}, tags={{"ep": "a b"}}),
    C.gauge("hub.gauge", 7.25, timestamp={b1}, tags={{"k": "x,y=z"}}),
    C.histogram("hub.hist", 3, timestamp={b1}),
    C.histogram("hub.hist", 1, timestamp={b2}),
    C.set("hub.set", ["x", "y", "x"], timestamp={b1}),
    C.rate("hub.rate", 50, timestamp={b1}),
]
assert all(f.result() for f in futures)
"#,
            b1 = base + 1.25,
            b2 = base + 2.5,
        ),
    );
    let mut con = redis.client();
    let mut vars = env(&redis);
    vars.push(("DATADOG_URL", dd.datadog_url()));
    vars.push(("INFLUXDB_URL", influx.url()));
    vars.push(("OPENTSDB_URL", tsdb.opentsdb_url().expect("opentsdb listener")));
    let agent = Agent::start(agent_binary!(), &vars);
    wait_until("every outbox drained", Duration::from_secs(60), || {
        [
            "chouette:metrics:raw.keys",
            "chouette:metrics:wrapped.keys",
            "chouette:metrics:wrapped.influxdb.keys",
            "chouette:metrics:wrapped.opentsdb.keys",
        ]
        .iter()
        .all(|k| zcard(&mut con, k) == 0)
            && zcard(&mut con, "chouette:metrics:wrapped.influxdb.dead.keys")
                + zcard(&mut con, "chouette:metrics:wrapped.opentsdb.dead.keys")
                == 0
    });
    assert!(agent.output().contains("output=influxdb"), "{}", agent.output());
    assert!(agent.stop().success());
    let sec = base as i64;
    let ms = sec * 1000;

    // InfluxDB: measurement = name, field value, tags = tags + global + host, seconds.
    let tags = "env=hub,host=hub-host";
    assert_eq!(
        influx_points(&influx, "hub.count"),
        vec![("env=hub,ep=a b,host=hub-host".to_owned(), sec, 5.0)]
    );
    assert_eq!(influx_points(&influx, "hub.gauge"), vec![(format!("{tags},k=x,y=z"), sec, 7.25)]);
    assert_eq!(influx_points(&influx, "hub.hist.max"), vec![(tags.to_owned(), sec, 3.0)]);
    assert_eq!(influx_points(&influx, "hub.hist.avg"), vec![(tags.to_owned(), sec, 2.0)]);
    assert_eq!(influx_points(&influx, "hub.hist.count"), vec![(tags.to_owned(), sec, 0.2)]); // a rate: 2 samples in 10 s
    assert_eq!(influx_points(&influx, "hub.set"), vec![(tags.to_owned(), sec, 2.0)]);
    assert_eq!(influx_points(&influx, "hub.rate"), vec![(tags.to_owned(), sec, 5.0)]);

    // OpenTSDB (VictoriaMetrics' listener) and Datadog get the same points.
    dd.flush();
    tsdb.flush();
    for vm in [&dd, &tsdb] {
        let got = vm.series(r#"{__name__=~"hub\\..*"}"#);
        let value = |key: &str| got.get(key).cloned().unwrap_or_default();
        assert_eq!(value("__name__=hub.count,env=hub,ep=a b,host=hub-host"), vec![(ms, 5.0)], "{got:?}");
        assert_eq!(value("__name__=hub.gauge,env=hub,host=hub-host,k=x,y=z"), vec![(ms, 7.25)], "{got:?}");
        assert_eq!(value("__name__=hub.hist.avg,env=hub,host=hub-host"), vec![(ms, 2.0)], "{got:?}");
        assert_eq!(value("__name__=hub.set,env=hub,host=hub-host"), vec![(ms, 2.0)], "{got:?}");
        assert_eq!(value("__name__=hub.rate,env=hub,host=hub-host"), vec![(ms, 5.0)], "{got:?}");
    }
}

#[test]
fn an_output_down_for_a_while_gets_everything_once_back_and_never_slows_the_others() {
    let redis = RedisServer::start();
    let dd = VictoriaMetrics::start();
    let tsdb = VictoriaMetrics::start_with_opentsdb();
    let influx_port = free_port(); // nothing listens there yet
    let base = bucket_base();
    let mut con = redis.client();
    // 30 buckets × 20 series of counts, each count 1 + i.
    let mut records = Vec::new();
    let mut names = Vec::new();
    for s in 0..20 {
        names.push(format!("down.s{s}"));
        for b in 0..30 {
            let ts = base - 300.0 + f64::from(b) * 10.0 + 1.0;
            let value = format!(
                r#"{{"metric": "down.s{s}", "type": "count", "value": {v}, "timestamp": {ts:?}, "tags": {{}}}}"#,
                v = 1 + b
            );
            records.push((format!("r{s}-{b}"), ts, value));
        }
    }
    write_raw(&mut con, &records);
    let mut vars = env(&redis);
    vars.push(("DATADOG_URL", dd.datadog_url()));
    vars.push(("INFLUXDB_URL", format!("http://127.0.0.1:{influx_port}")));
    vars.push(("OPENTSDB_URL", tsdb.opentsdb_url().expect("opentsdb listener")));
    vars.push(("CHOUETTE_CONNECT_TIMEOUT", "1".into()));
    // Stored bodies (zlib and gzip without compression): every backend takes them too.
    vars.push(("COMPRESSION_LEVEL", "0".into()));
    let agent = Agent::start(agent_binary!(), &vars);
    // Datadog and OpenTSDB drain while InfluxDB is down; its outbox keeps all 600 points.
    wait_until("datadog and opentsdb drained", Duration::from_secs(60), || {
        zcard(&mut con, "chouette:metrics:raw.keys") == 0
            && zcard(&mut con, "chouette:metrics:wrapped.keys") == 0
            && zcard(&mut con, "chouette:metrics:wrapped.opentsdb.keys") == 0
    });
    assert_eq!(zcard(&mut con, "chouette:metrics:wrapped.influxdb.keys"), 600);
    dd.flush();
    tsdb.flush();
    let expected: f64 = (1..=30).map(f64::from).sum::<f64>() * 20.0;
    for vm in [&dd, &tsdb] {
        let got = vm.series(r#"{__name__=~"down\\..*"}"#);
        let points: usize = got.values().map(Vec::len).sum();
        let sum: f64 = got.values().flatten().map(|(_, v)| v).sum();
        assert_eq!((points, sum), (600, expected), "{got:?}");
    }
    // InfluxDB comes back: everything arrives, once.
    let influx = InfluxServer::start_on(influx_port);
    influx.create_database(DB);
    wait_until("influxdb outbox drained", Duration::from_secs(150), || {
        zcard(&mut con, "chouette:metrics:wrapped.influxdb.keys") == 0
    });
    assert!(agent.stop().success());
    assert_eq!(influx_count(&influx, &names), 600);
    let sum: f64 = names.iter().flat_map(|m| influx_points(&influx, m)).map(|(_, _, v)| v).sum();
    assert_eq!(sum, expected);
    assert_eq!(zcard(&mut con, "chouette:metrics:wrapped.influxdb.dead.keys"), 0);
}

#[test]
fn influxdb_partial_writes_dead_letter_only_the_refused_records_and_a_missing_database_keeps_all() {
    let redis = RedisServer::start();
    let influx = InfluxServer::start();
    let base = bucket_base();
    let mut con = redis.client();
    // `conflict.gauge` already holds an integer field: our float is a type conflict.
    let records: Vec<(String, f64, String)> = (0..10)
        .map(|i| {
            let name = if i == 4 { "conflict.gauge".to_owned() } else { format!("ok.g{i}") };
            let value = format!(
                r#"{{"metric": "{name}", "type": "gauge", "value": {i}.5, "timestamp": {:?}, "tags": {{}}}}"#,
                base + 1.0
            );
            (format!("p{i}"), base + 1.0, value)
        })
        .collect();
    write_raw(&mut con, &records);
    let mut vars = env(&redis);
    vars.push(("INFLUXDB_URL", influx.url()));
    vars.push(("INFLUXDB_DATABASE", DB.into()));
    let agent = Agent::start(agent_binary!(), &vars);
    // No database yet: 404, everything kept, an ERROR naming the variables.
    wait_until("the 404 is reported", Duration::from_secs(30), || {
        agent.output().contains("check INFLUXDB_URL")
    });
    assert_eq!(zcard(&mut con, "chouette:metrics:wrapped.influxdb.keys"), 10);
    assert_eq!(zcard(&mut con, "chouette:metrics:wrapped.influxdb.dead.keys"), 0);
    influx.create_database(DB);
    let (status, body) =
        influx.write(DB, format!("conflict.gauge value=1i {}\n", base as i64 - 100).as_bytes());
    assert_eq!(status, 204, "{body}");
    wait_until("the influxdb outbox drained", Duration::from_secs(150), || {
        zcard(&mut con, "chouette:metrics:wrapped.influxdb.keys") == 0
    });
    // Read from InfluxDB's answer, not found by bisection (which would resend stored lines).
    let log = agent.output();
    assert!(log.contains("refused=1") && log.contains("partial write, refused records identified"), "{log}");
    assert!(agent.stop().success());
    // Exactly the conflicting record is dead, with InfluxDB's reason; the 9 others stored once.
    let dead: BTreeMap<String, String> =
        con.hgetall("chouette:metrics:wrapped.influxdb.dead.values").expect("hgetall");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let envelope = dead.values().next().unwrap();
    assert!(envelope.contains("conflict.gauge"), "{envelope}");
    assert!(dead.values().next().unwrap().contains("\"reason\": \"influxdb_type_conflict\""), "{dead:?}");
    for i in (0..10).filter(|&i| i != 4) {
        assert_eq!(
            influx_points(&influx, &format!("ok.g{i}")),
            vec![("env=hub,host=hub-host".to_owned(), base as i64, f64::from(i) + 0.5)]
        );
    }
    assert_eq!(influx_points(&influx, "conflict.gauge").len(), 1, "only the integer written by hand");
}

#[test]
fn influxdb_v2_writes_with_a_token_reach_victoria_metrics() {
    // InfluxDB 2 is not in Debian; VictoriaMetrics serves the v2 write API
    // (`/api/v2/write?org=&bucket=&precision=`, gzip) and names a series `<measurement>_<field>`.
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let base = bucket_base();
    let mut con = redis.client();
    let records: Vec<(String, f64, String)> = (0..3)
        .map(|i| {
            let value = format!(
                r#"{{"metric": "v2.g{i}", "type": "gauge", "value": {i}.25, "timestamp": {:?}, "tags": {{"k": "a b"}}}}"#,
                base + 1.0
            );
            (format!("v{i}"), base + 1.0, value)
        })
        .collect();
    write_raw(&mut con, &records);
    let mut vars = env(&redis);
    let url = vm.datadog_url();
    let vm_base = url.trim_end_matches("/datadog/api").to_owned();
    vars.push(("INFLUXDB_URL", vm_base));
    vars.push(("INFLUXDB_ORG", "boards".into()));
    vars.push(("INFLUXDB_BUCKET", "metrics".into()));
    vars.push(("INFLUXDB_TOKEN", "s3cret-token".into()));
    let agent = Agent::start(agent_binary!(), &vars);
    wait_until("the influxdb outbox drained", Duration::from_secs(60), || {
        zcard(&mut con, "chouette:metrics:raw.keys") == 0
            && zcard(&mut con, "chouette:metrics:wrapped.influxdb.keys") == 0
    });
    let log = agent.output();
    assert!(log.contains("api/v2/write?org=boards&bucket=metrics&precision=s"), "{log}");
    assert!(!log.contains("s3cret-token"), "the token never appears in a log line");
    assert!(agent.stop().success());
    vm.flush();
    let got = vm.series(r#"{__name__=~"v2\\..*"}"#);
    let ms = (base as i64) * 1000;
    for i in 0..3 {
        let key = format!("__name__=v2.g{i}_value,env=hub,host=hub-host,k=a b");
        assert_eq!(got.get(&key), Some(&vec![(ms, f64::from(i) + 0.25)]), "{got:?}");
    }
}
