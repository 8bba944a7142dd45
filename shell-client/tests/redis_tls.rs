//! The client on a Redis that speaks TLS with a CA of its own and asks for client certificates
//! (Redis's default with TLS): a real `redis-server` with a TLS port beside its plain one (read
//! back through the plain one).

mod common;

use std::time::Duration;

use chouette_client::{Client, ClientConfig, ConfigError, RedisTls};
use chouette_tests::RedisServer;
use common::*;

#[test]
fn records_reach_a_tls_redis_that_asks_for_a_client_certificate() {
    let redis = RedisServer::start_tls(true);
    let tls = redis.tls.as_ref().unwrap();
    let files = RedisTls {
        ca_file: Some(tls.ca.clone()),
        cert_file: Some(tls.client_cert.clone()),
        key_file: Some(tls.client_key.clone()),
    };
    let c = Client::new(ClientConfig::new(redis.tls_url()).with_redis_tls(files)).expect("client");
    c.at(1600000000.25).count("tls.count", 3, &[("k", "v")]);
    c.shutdown(Duration::from_secs(10)).expect("flushed over TLS");
    assert_eq!(c.stats().errors, 0);
    let got: Vec<serde_json::Value> = metrics(&mut redis.client()).iter().map(|r| json(&r.2)).collect();
    assert!(
        got.iter().any(|v| v["metric"] == "tls.count" && v["value"] == 3 && v["tags"]["k"] == "v"),
        "{got:?}"
    );
}

#[test]
fn without_its_client_certificate_nothing_is_written_and_the_errors_are_counted() {
    let redis = RedisServer::start_tls(true);
    let tls = redis.tls.as_ref().unwrap();
    let files = RedisTls { ca_file: Some(tls.ca.clone()), ..RedisTls::default() };
    let config = ClientConfig::new(redis.tls_url())
        .with_redis_tls(files)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(50));
    let c = Client::new(config).expect("client");
    c.at(1600000000.25).count("tls.count", 3, &[]);
    wait_until("a refused handshake counted", Duration::from_secs(10), || c.stats().errors > 0);
    assert!(metrics(&mut redis.client()).is_empty());
    assert!(c.shutdown(Duration::from_millis(200)).is_err(), "the record is still held, not written");
}

#[test]
fn a_tls_file_without_what_it_should_hold_is_a_setup_error() {
    let redis = RedisServer::start_tls(false);
    let tls = redis.tls.as_ref().unwrap();
    // The key file where the CA should be: no certificate in it.
    let files = RedisTls { ca_file: Some(tls.client_key.clone()), ..RedisTls::default() };
    match Client::new(ClientConfig::new(redis.tls_url()).with_redis_tls(files)) {
        Err(ConfigError::RedisTls { var, detail, .. }) => {
            assert_eq!((var, detail.as_str()), ("REDIS_TLS_CA_FILE", "no PEM certificate in it"))
        }
        other => panic!("{:?}", other.map(|_| "a client")),
    }
}
