//! The process-wide client from the environment, and its free functions.

mod common;

use std::time::Duration;

use chouette_client::Member;
use chouette_tests::RedisServer;
use common::*;

#[test]
fn free_functions_write_through_the_global_client() {
    let redis = RedisServer::start();
    // REDIS_HOST/REDIS_PORT as the original; CHOUETTE_TAGS for global tags.
    std::env::remove_var("REDIS_URL");
    std::env::set_var("REDIS_HOST", "127.0.0.1");
    std::env::set_var("REDIS_PORT", redis.port.to_string());
    std::env::set_var("CHOUETTE_TAGS", "env:prod, app:x");
    chouette_client::count("g.count", 1, &[]);
    chouette_client::increment("g.inc", 2, &[]);
    chouette_client::decrement("g.dec", 2, &[("k", "v")]);
    chouette_client::gauge("g.gauge", 1.25, &[]);
    chouette_client::rate("g.rate", 3, &[]);
    chouette_client::histogram("g.hist", 4, &[]);
    chouette_client::set("g.set", &[Member::Str("a")], &[]);
    chouette_client::at(5.0).count("g.at", 1, &[]);
    let v = chouette_client::time("g.time", &[], || 3);
    assert_eq!(v, 3);
    drop(chouette_client::timed("g.timed", &[]));
    chouette_client::shutdown_global(Duration::from_secs(5)).expect("flushed");

    let mut con = redis.client();
    let got = app_jsons(&mut con);
    assert_eq!(got.len(), 10, "{got:?}");
    for j in &got {
        let v = json(j);
        assert_eq!(v["tags"]["env"], "prod");
        assert_eq!(v["tags"]["app"], "x");
    }
    let dec = got.iter().map(|j| json(j)).find(|v| v["metric"] == "g.dec").unwrap();
    assert_eq!(dec["value"], -2);
    assert_eq!(dec["type"], "count");
}
