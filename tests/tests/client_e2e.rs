//! End to end with our own client: `chouette-client` (raw and aggregating modes, and its `log`
//! bridge) → Redis → the `chouette` binary → VictoriaMetrics / a fake logs intake, exact values.

use std::collections::BTreeMap;
use std::time::Duration;

use chouette_client::{ChouetteLogger, Client, ClientConfig, Member};
use chouette_tests::agent_binary;
use chouette_tests::intake::FakeIntake;
use chouette_tests::{wait_until, Agent, RedisServer, VictoriaMetrics};
use redis::Commands;

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The same calls through a raw-mode client (`e2e.raw.*`) and an aggregating one (`e2e.agg.*`).
fn write_metrics(client: &Client, prefix: &str, base: f64) {
    let name = |n: &str| format!("{prefix}.{n}");
    client.at(base + 1.0).count(&name("req"), 1, &[("ep", "a")]);
    client.at(base + 3.5).count(&name("req"), 2, &[("ep", "a")]);
    client.at(base + 12.0).count(&name("req"), 4, &[("ep", "a")]);
    client.at(base + 4.0).decrement(&name("req"), 1, &[("ep", "a")]);
    client.at(base + 1.0).gauge(&name("temp"), 40, &[]);
    client.at(base + 5.0).gauge(&name("temp"), 42.5, &[]);
    client.at(base + 2.0).rate(&name("rate"), 5, &[]);
    client.at(base + 4.0).rate(&name("rate"), 15, &[]);
    for i in 1..=10 {
        client.at(base + i as f64 * 0.5).histogram(&name("lat"), i, &[("route", "/x")]);
    }
    client.at(base + 1.0).set(&name("users"), &[Member::Str("alice"), Member::Str("bob")], &[]);
    client.at(base + 2.0).set(&name("users"), &[Member::Str("bob"), Member::Str("carol")], &[]);
}

#[test]
fn our_client_to_our_agent_to_victoria_metrics_exactly() {
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let base = ((now() / 10.0).floor() * 10.0) - 600.0;
    let raw = Client::new(ClientConfig::new(redis.url())).expect("raw client");
    let agg =
        Client::new(ClientConfig::new(redis.url()).aggregating(Duration::from_secs(10))).expect("client");
    write_metrics(&raw, "e2e.raw", base);
    write_metrics(&agg, "e2e.agg", base);
    raw.shutdown(Duration::from_secs(5)).expect("raw flushed");
    agg.shutdown(Duration::from_secs(5)).expect("aggregates flushed");

    let agent = Agent::start(
        agent_binary!(),
        &[
            ("REDIS_URL", redis.url()),
            ("DATADOG_URL", vm.datadog_url()),
            ("HOST", "e2e-host".into()),
            ("AGGREGATE_INTERVAL", "10".into()),
            ("RELEASE_INTERVAL", "1".into()),
            ("SEND_SELF_METRICS", "false".into()),
        ],
    );
    let mut con = redis.client();
    wait_until("the queues to drain", Duration::from_secs(60), || {
        con.zcard::<_, u64>("chouette:metrics:raw.keys").unwrap() == 0
            && con.zcard::<_, u64>("chouette:metrics:wrapped.keys").unwrap() == 0
    });
    assert!(agent.stop().success());
    vm.flush();

    let ms = |offset: f64| ((base + offset) * 1000.0) as i64;
    for prefix in ["e2e.raw", "e2e.agg"] {
        let got = vm.series(&format!(r#"{{__name__=~"{}\\..*"}}"#, prefix.replace('.', "\\\\.")));
        let want: BTreeMap<String, Vec<(i64, f64)>> = [
            ("req,ep=a,host=e2e-host", vec![(ms(0.0), 2.0), (ms(10.0), 4.0)]),
            ("temp,host=e2e-host", vec![(ms(0.0), 42.5)]),
            ("rate,host=e2e-host", vec![(ms(0.0), 2.0)]),
            ("lat.avg,host=e2e-host,route=/x", vec![(ms(0.0), 5.5)]),
            ("lat.count,host=e2e-host,route=/x", vec![(ms(0.0), 1.0)]),
            ("lat.max,host=e2e-host,route=/x", vec![(ms(0.0), 10.0)]),
            ("lat.median,host=e2e-host,route=/x", vec![(ms(0.0), 5.5)]),
            ("lat.95percentile,host=e2e-host,route=/x", vec![(ms(0.0), 9.55)]),
            ("users,host=e2e-host", vec![(ms(0.0), 3.0)]),
        ]
        .into_iter()
        .map(|(k, v)| (format!("__name__={prefix}.{k}"), v))
        .collect();
        assert_eq!(got, want, "{prefix}");
    }
}

#[test]
fn logs_through_the_log_crate_reach_the_intake() {
    let redis = RedisServer::start();
    let intake = FakeIntake::start();
    let client = Client::new(ClientConfig::new(redis.url())).expect("client");
    ChouetteLogger::new(client.clone(), "shop")
        .expect("logger")
        .with_level(log::LevelFilter::Info)
        .init()
        .expect("init");
    log::info!(tags = "app:x", order = 17; "order {} paid", 17);
    log::debug!("filtered");
    client.shutdown(Duration::from_secs(5)).expect("flushed");

    let agent = Agent::start(
        agent_binary!(),
        &[
            ("REDIS_URL", redis.url()),
            ("API_KEY", "k".repeat(32)),
            ("DATADOG_URL", format!("{}/api", intake.url())),
            ("DATADOG_LOGS_URL", intake.url()),
            ("HOST", "e2e-host".into()),
            ("RELEASE_INTERVAL", "1".into()),
            ("SEND_SELF_METRICS", "false".into()),
        ],
    );
    let mut con = redis.client();
    wait_until("the logs queue to drain", Duration::from_secs(60), || {
        con.zcard::<_, u64>("chouette:logs:wrapped.keys").unwrap() == 0
    });
    assert!(agent.stop().success());
    let mut entries = Vec::new();
    for request in intake.take_requests().iter().filter(|r| r.path == "/v1/input" && r.accepted()) {
        let batch: Vec<serde_json::Value> = serde_json::from_str(&request.body).expect("JSON array");
        entries.extend(batch);
    }
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e["message"]["msg"], "order 17 paid");
    assert_eq!(e["ddtags"], "app:x");
    assert_eq!(e["service"], "shop");
    assert_eq!(e["ddsource"], "shop");
    assert_eq!(e["level"], "INFO");
    assert_eq!(e["order"], 17);
}
