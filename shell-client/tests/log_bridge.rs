//! The `log` bridge into a real Redis (its own test binary: one logger per process).

mod common;

use std::time::Duration;

use chouette_client::{ChouetteLogger, Client, ClientConfig, LogSetupError};
use chouette_tests::RedisServer;
use common::*;

#[test]
fn logs_reach_redis_filtered_tagged_and_formatted() {
    let redis = RedisServer::start();
    let client = Client::new(ClientConfig::new(redis.url()).with_tags([("env", "test")])).expect("client");

    // A bad level is an error at setup, naming the variable; any case works.
    std::env::set_var("CHOUETTE_LOG_LEVEL", "loud");
    let err = ChouetteLogger::new(client.clone(), "svc").unwrap_err();
    assert!(matches!(err, LogSetupError::InvalidLevel { .. }));
    assert!(err.to_string().contains("CHOUETTE_LOG_LEVEL=\"loud\""), "{err}");
    std::env::set_var("CHOUETTE_LOG_LEVEL", "warning");
    let logger = ChouetteLogger::new(client.clone(), "svc").expect("logger");
    std::env::remove_var("CHOUETTE_LOG_LEVEL");
    assert_eq!(logger.level(), log::LevelFilter::Warn);
    logger.init().expect("install");

    log::info!("filtered out");
    log::warn!(tags = "a:b,c:d", tag_region = "eu", code = 89, user = "ann"; "disk {}% full", 91);
    log::error!(target: "chouette_client::worker", "about itself: not shipped");
    log::error!("boom");
    client.shutdown(Duration::from_secs(5)).expect("flushed");

    let mut con = redis.client();
    let logs = records(&mut con, LOGS_KEYS, LOGS_VALUES);
    assert_eq!(logs.len(), 2, "{logs:?}");
    let warn = logs.iter().find(|r| r.2.contains("WARNING")).expect("warning");
    let value = json(&warn.2);
    // The original handler's field set in its order, then the extras.
    let order = ["date", "ddsource", "ddtags", "level", "message", "service", "code", "user"];
    assert_eq!(value.as_object().unwrap().len(), order.len());
    let at: Vec<usize> = order.iter().map(|k| warn.2.find(&format!("\"{k}\": ")).expect(k)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{}", warn.2);
    assert_eq!(value["ddsource"], "svc");
    assert_eq!(value["service"], "svc");
    assert_eq!(value["ddtags"], serde_json::json!(["env:test", "a:b", "c:d", "region:eu"]));
    assert_eq!(value["message"], serde_json::json!({"msg": "disk 91% full"}));
    assert_eq!(value["code"], 89);
    let date = value["date"].as_str().unwrap();
    assert_eq!(date.len(), 32, "{date}");
    assert!(date.ends_with("+00:00") && date.as_bytes()[19] == b'.', "{date}");
    // The score is the date read back, as the original stored it.
    let parsed = chouette_core::wire::log::parse_log_date(date).unwrap().as_secs_f64();
    assert_eq!(warn.1, parsed);
    // And the agent's own parser reads the record.
    let rec = chouette_core::wire::log::parse_log(warn.2.as_bytes()).expect("agent parses it");
    assert_eq!(rec.ddtags().len(), 4);
}
