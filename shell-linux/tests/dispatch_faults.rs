//! The dispatcher over real HTTP (ureq) against a fake intake that injects faults: 5xx, 429,
//! 413, 400, 403, slow answers (timeouts) and dropped connections. Every test checks that each
//! record gets exactly one disposition and that nothing is delivered twice.

use std::time::Duration;

use chouette_agent::dispatch::{
    Backoff, Destination, DispatchConfig, Dispatcher, Disposition, Outcome, Report, UreqTransport,
};
use chouette_agent::store::Record;
use chouette_core::wire::json::Scanner;
use chouette_tests::intake::{Answer, FakeIntake, Request, When};

const KEY: &str = "0123456789abcdef-secret-key";

fn dispatcher(intake: &FakeIntake, request_timeout: Duration) -> Dispatcher<UreqTransport> {
    let mut config = DispatchConfig::for_base_url(&format!("{}/api", intake.url()), Some(KEY));
    config.logs_url = format!("{}/v1/input", intake.url());
    config.global_tags = vec!["env:test".into(), "device:pi".into()];
    config.host = Some("myhost".into());
    let transport = UreqTransport::with_timeouts(Duration::from_secs(2), request_timeout);
    // No waiting between calls: these tests drive the retries themselves.
    Dispatcher::new(transport, config).with_backoff(Backoff::new(Duration::ZERO, Duration::ZERO, 1))
}

fn metric(i: usize, name: &str) -> Record {
    Record {
        oversize: None,
        id: format!("m{i}").into(),
        score: 1795310770.0,
        value: Some(
            format!(
                r#"{{"metric": "{name}", "tags": ["i:{i}"], "points": [[1795310770.0, {i}]], "type": "count", "interval": 10}}"#
            )
            .into(),
        ),
    }
}

fn metrics(n: usize) -> Vec<Record> {
    (0..n).map(|i| metric(i, "req")).collect()
}

fn log_record(i: usize) -> Record {
    Record {
        oversize: None,
        id: format!("l{i}").into(),
        score: 1795310770.0,
        value: Some(
            format!(
                r#"{{"date": "2026-11-22T01:25:26.038424+00:00", "ddsource": "svc", "ddtags": ["a:b"], "level": "INFO", "message": {{"msg": "hi {i}"}}, "service": "svc"}}"#
            )
            .into(),
        ),
    }
}

fn assert_conserved(report: &Report, n: usize) {
    assert_eq!(report.dispositions.len(), n);
    let kept = report.dispositions.iter().filter(|d| **d == Disposition::Kept).count();
    let dead = report.dispositions.iter().filter(|d| matches!(d, Disposition::Dead { .. })).count();
    assert_eq!((report.retried + report.deferred, report.dead), (kept as u64, dead as u64));
}

fn is_json(text: &str) -> bool {
    let Ok(mut sc) = Scanner::new(text.as_bytes()) else {
        return false;
    };
    sc.skip_value().is_ok() && sc.finish().is_ok()
}

/// Series entries (one per record here) in the accepted requests.
fn accepted_entries(requests: &[Request]) -> usize {
    requests.iter().filter(|r| r.accepted()).map(|r| r.body.matches("\"points\"").count()).sum()
}

fn delivered(report: &Report) -> usize {
    report.dispositions.iter().filter(|d| **d == Disposition::Delivered).count()
}

#[test]
fn series_go_with_the_key_in_a_header_deflated_and_shaped_like_the_original() {
    let intake = FakeIntake::start();
    let mut d = dispatcher(&intake, Duration::from_secs(5));
    let report = d.send_metrics(&metrics(50));
    assert_conserved(&report, 50);
    assert_eq!((delivered(&report), report.requests), (50, 1));
    assert_eq!(report.last_status.as_deref(), Some("202"));
    let requests = intake.take_requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/api/v1/series"));
    assert_eq!(r.header("DD-API-KEY"), Some(KEY));
    assert!(!r.path.contains(KEY) && !r.query.contains(KEY) && r.query.is_empty());
    assert_eq!(r.header("Content-Encoding"), Some("deflate"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert!(r.header("User-Agent").is_some_and(|ua| ua.starts_with("chouette/")));
    assert!(is_json(&r.body), "{}", r.body);
    assert!(r.body.starts_with(r#"{"series": [{"metric": "req", "tags": ["i:0", "env:test", "device:pi"], "type": "count", "interval": 10, "host": "myhost", "points": [[1795310770, 0]]}, "#), "{}", r.body);
    assert_eq!(r.body.matches(r#""host": "myhost""#).count(), 50);
    assert_eq!(accepted_entries(&requests), 50);
}

#[test]
fn logs_go_as_a_json_array_with_joined_ddtags_and_host() {
    let intake = FakeIntake::start();
    let mut d = dispatcher(&intake, Duration::from_secs(5));
    let report = d.send_logs(&(0..20).map(log_record).collect::<Vec<_>>());
    assert_conserved(&report, 20);
    assert_eq!(delivered(&report), 20);
    let requests = intake.take_requests();
    let r = &requests[0];
    assert_eq!(r.path, "/v1/input");
    assert_eq!(r.header("DD-API-KEY"), Some(KEY));
    assert_eq!(r.header("Content-Encoding"), Some("deflate"));
    assert!(is_json(&r.body) && r.body.starts_with('['), "{}", r.body);
    assert_eq!(r.body.matches(r#""ddtags": "a:b,env:test,device:pi""#).count(), 20);
    assert_eq!(r.body.matches(r#""host": "myhost""#).count(), 20);
}

#[test]
fn server_errors_and_throttling_keep_everything_until_the_backend_recovers() {
    let intake = FakeIntake::start();
    intake.push_answers([Answer::Status(500), Answer::Status(503), Answer::Status(429)]);
    let mut d = dispatcher(&intake, Duration::from_secs(5));
    let records = metrics(30);
    for status in ["500", "503", "429"] {
        let report = d.send_metrics(&records);
        assert_conserved(&report, 30);
        assert_eq!((report.retried, report.requests), (30, 1));
        assert_eq!(report.last_status.as_deref(), Some(status));
    }
    let report = d.send_metrics(&records);
    assert_conserved(&report, 30);
    assert_eq!(delivered(&report), 30);
    let requests = intake.take_requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(accepted_entries(&requests), 30, "delivered exactly once");
}

#[test]
fn too_large_payloads_are_split_until_they_fit() {
    let intake = FakeIntake::start();
    let limit = 2_000; // bytes of JSON the intake takes
    intake.add_rule(When::BodyOver(limit), Answer::Status(413));
    let mut d = dispatcher(&intake, Duration::from_secs(5));
    let report = d.send_metrics(&metrics(100));
    assert_conserved(&report, 100);
    assert_eq!(delivered(&report), 100);
    let requests = intake.take_requests();
    assert!(requests.iter().filter(|r| r.accepted()).all(|r| r.body.len() <= limit));
    assert_eq!(accepted_entries(&requests), 100, "delivered exactly once");
}

#[test]
fn bad_requests_dead_letter_only_the_offending_records() {
    let intake = FakeIntake::start();
    intake.add_rule(When::BodyContains("poison".into()), Answer::Status(400));
    let mut d = dispatcher(&intake, Duration::from_secs(5));
    let poison = [3, 77, 150];
    let records: Vec<Record> =
        (0..200).map(|i| metric(i, if poison.contains(&i) { "poison" } else { "req" })).collect();
    let report = d.send_metrics(&records);
    assert_conserved(&report, 200);
    for (i, disp) in report.dispositions.iter().enumerate() {
        let expected = if poison.contains(&i) {
            Disposition::Dead { reason: "http_400".into() }
        } else {
            Disposition::Delivered
        };
        assert_eq!(*disp, expected, "record {i}");
    }
    assert_eq!(accepted_entries(&intake.take_requests()), 197, "delivered exactly once");
}

#[test]
fn a_refused_key_keeps_everything() {
    let intake = FakeIntake::start();
    intake.set_default(Answer::Status(403));
    let mut d = dispatcher(&intake, Duration::from_secs(5));
    let report = d.send_logs(&(0..10).map(log_record).collect::<Vec<_>>());
    assert_conserved(&report, 10);
    assert_eq!((report.retried, report.requests), (10, 1));
    assert_eq!(report.last_status.as_deref(), Some("403"));
    // With the real backoff, the next call waits and makes no request.
    let mut d = dispatcher(&intake, Duration::from_secs(5)).with_backoff(Backoff::default());
    let _ = d.send_metrics(&metrics(5));
    assert!(d.ready_at(Destination::Metrics).is_some());
    let report = d.send_metrics(&metrics(5));
    assert_eq!((report.retried, report.requests), (5, 0));
    assert_eq!(intake.take_requests().len(), 2);
}

#[test]
fn a_timeout_keeps_the_data_and_a_later_call_delivers_it() {
    let intake = FakeIntake::start();
    intake.push_answers([Answer::Slow { delay: Duration::from_millis(1500), status: 202 }]);
    let mut d = dispatcher(&intake, Duration::from_millis(400));
    let records = metrics(10);
    let report = d.send_metrics(&records);
    assert_conserved(&report, 10);
    assert_eq!(report.retried, 10);
    assert_eq!(report.last_status.as_deref(), Some("timeout"));
    let report = d.send_metrics(&records);
    assert_conserved(&report, 10);
    assert_eq!(delivered(&report), 10);
}

#[test]
fn a_dropped_connection_keeps_the_data_and_a_later_call_delivers_it() {
    let intake = FakeIntake::start();
    intake.push_answers([Answer::Reset]);
    let mut d = dispatcher(&intake, Duration::from_secs(5));
    let records: Vec<Record> = (0..10).map(log_record).collect();
    let report = d.send_logs(&records);
    assert_conserved(&report, 10);
    assert_eq!(report.retried, 10);
    assert_eq!(report.last_status.as_deref(), Some("reset"));
    let report = d.send_logs(&records);
    assert_eq!(delivered(&report), 10);
}

#[test]
fn nothing_listening_keeps_the_data() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let config = DispatchConfig::for_base_url(&format!("http://127.0.0.1:{port}"), Some(KEY));
    let transport = UreqTransport::with_timeouts(Duration::from_secs(1), Duration::from_secs(1));
    let mut d = Dispatcher::new(transport, config);
    let report = d.send_metrics(&metrics(3));
    assert_conserved(&report, 3);
    assert_eq!(report.retried, 3);
    assert_eq!(report.last_status.as_deref(), Some("connect_refused"));
    assert!(d.ready_at(Destination::Metrics).is_some());
}

#[test]
fn an_intake_refusing_everything_dead_letters_nothing_in_log_n_requests() {
    let intake = FakeIntake::start();
    intake.set_default(Answer::Status(400));
    let mut d = dispatcher(&intake, Duration::from_secs(5));
    let report = d.send_metrics(&metrics(10_000));
    assert_conserved(&report, 10_000);
    assert_eq!((report.dead, report.retried), (0, 10_000));
    assert_eq!(report.outcome, Outcome::Refused { reason: "http_400".into() });
    assert_eq!(report.requests, 39);
    assert_eq!(intake.take_requests().len(), 39);
    // The same records, the endpoint fixed: all delivered, exactly once.
    intake.set_default(Answer::Status(202));
    let report = d.send_metrics(&metrics(10_000));
    assert_eq!((delivered(&report), report.requests), (10_000, 1));
    assert_eq!(accepted_entries(&intake.take_requests()), 10_000);
}

#[test]
fn a_wrong_path_keeps_everything_after_one_request() {
    let intake = FakeIntake::start();
    intake.set_default(Answer::Status(404));
    let mut d = dispatcher(&intake, Duration::from_secs(5));
    let report = d.send_logs(&(0..50).map(log_record).collect::<Vec<_>>());
    assert_conserved(&report, 50);
    assert_eq!((report.retried, report.dead, report.requests), (50, 0, 1));
    assert_eq!(d.stats(Destination::Logs).failures, 1);
    assert_eq!(d.stats(Destination::Metrics).failures, 0);
}
