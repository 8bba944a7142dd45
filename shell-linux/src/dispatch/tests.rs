//! Dispatcher unit tests over a scripted in-memory transport.

use std::time::{Duration, Instant};

use super::*;

/// A transport answering with `answer(json body)`; records every decompressed body, and every
/// body as posted (compressed).
struct Scripted<F> {
    answer: F,
    bodies: Vec<String>,
    posted: Vec<Vec<u8>>,
    headers: Vec<Vec<(String, String)>>,
}

fn scripted<F>(answer: F) -> Scripted<F>
where
    F: FnMut(&str) -> Result<u16, TransportError> + Send,
{
    Scripted { answer, bodies: Vec::new(), posted: Vec::new(), headers: Vec::new() }
}

impl<F> Transport for Scripted<F>
where
    F: FnMut(&str) -> Result<u16, TransportError> + Send,
{
    fn post(
        &mut self,
        _url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, TransportError> {
        let json = String::from_utf8(inflate(body).expect("zlib body")).expect("utf-8");
        self.headers.push(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let status = (self.answer)(&json)?;
        self.bodies.push(json);
        self.posted.push(body.to_vec());
        Ok(HttpResponse::new(status, String::new()))
    }
}

fn config() -> DispatchConfig {
    let mut c = DispatchConfig::for_base_url("http://intake.test/api/", Some("k3y"));
    c.global_tags = vec!["env:test".to_owned()];
    c.host = Some("myhost".to_owned());
    c
}

fn metric(i: usize, name: &str) -> Record {
    Record {
        oversize: None,
        id: format!("id{i}").into(),
        score: 1795310770.0,
        value: Some(
            format!(
                r#"{{"metric": "{name}", "tags": ["i:{i}"], "points": [[1795310770.0, {i}]], "type": "gauge"}}"#
            )
            .into(),
        ),
    }
}

fn metrics(n: usize) -> Vec<Record> {
    (0..n).map(|i| metric(i, "m")).collect()
}

fn log_record(i: usize) -> Record {
    Record {
        oversize: None,
        id: format!("log{i}").into(),
        score: 1795310770.0,
        value: Some(
            format!(
                r#"{{"date": "2026-11-22T01:25:26.038424+00:00", "ddsource": "svc", "ddtags": ["a:b"], "level": "INFO", "message": {{"msg": "hello {i}"}}, "service": "svc"}}"#
            )
            .into(),
        ),
    }
}

/// Every record has one disposition and the counters agree with them.
fn assert_conserved(report: &Report, n: usize) {
    assert_eq!(report.dispositions.len(), n);
    let count = |f: fn(&Disposition) -> bool| report.dispositions.iter().filter(|d| f(d)).count();
    let delivered = count(|d| *d == Disposition::Delivered);
    let dead = count(|d| matches!(d, Disposition::Dead { .. }));
    let kept = count(|d| *d == Disposition::Kept);
    assert_eq!(delivered + dead + kept, n);
    assert_eq!(report.dead, dead as u64);
    assert_eq!(report.retried + report.deferred, kept as u64);
}

fn points_in(json: &str) -> usize {
    json.matches("\"points\"").count()
}

#[test]
fn delivers_in_one_request_with_host_global_tags_and_key_header() {
    let mut d = Dispatcher::new(scripted(|_| Ok(202)), config());
    let report = d.send_metrics(&metrics(100));
    assert_conserved(&report, 100);
    assert!(report.dispositions.iter().all(|x| *x == Disposition::Delivered));
    assert_eq!((report.requests, report.delivered_points), (1, 100));
    assert_eq!(report.last_status.as_deref(), Some("202"));
    assert!(report.delivered_bytes > 0);
    let t = d.transport();
    let body = &t.bodies[0];
    assert!(body.starts_with(r#"{"series": [{"metric": "m", "tags": ["i:0", "env:test"], "type": "gauge", "host": "myhost", "points": [[1795310770, 0]]}"#), "{body}");
    let h = &t.headers[0];
    assert!(h.contains(&("DD-API-KEY".into(), "k3y".into())));
    assert!(h.contains(&("Content-Encoding".into(), "deflate".into())));
    assert!(h.contains(&("Content-Type".into(), "application/json".into())));
    assert_eq!(d.ready_at(Destination::Metrics), None);
}

/// The buffers kept between requests are freed on request, and the next send grows them again.
#[test]
fn released_buffers_are_freed_and_sending_goes_on() {
    let mut d = Dispatcher::new(scripted(|_| Ok(202)), config());
    assert_eq!(d.send_metrics(&metrics(100)).delivered_points, 100);
    assert!(d.entries.capacity() > 0 && d.payload.capacity() > 0);
    d.release_buffers();
    assert_eq!((d.entries.capacity(), d.payload.capacity()), (0, 0));
    let report = d.send_metrics(&metrics(50));
    assert_eq!((report.requests, report.delivered_points), (1, 50));
    assert_eq!(points_in(&d.transport().bodies[1]), 50);
}

#[test]
fn bulk_size_bounds_points_per_request() {
    let mut c = config();
    c.max_points = 10;
    let mut d = Dispatcher::new(scripted(|_| Ok(200)), c);
    let report = d.send_metrics(&metrics(25));
    assert_conserved(&report, 25);
    assert_eq!(report.requests, 3);
    let sizes: Vec<usize> = d.transport().bodies.iter().map(|b| points_in(b)).collect();
    assert_eq!(sizes, [10, 10, 5]);
}

#[test]
fn too_large_is_split_in_halves_until_it_fits() {
    // The backend takes at most 7 entries per request.
    let mut d = Dispatcher::new(scripted(|b| Ok(if points_in(b) > 7 { 413 } else { 202 })), config());
    let report = d.send_metrics(&metrics(100));
    assert_conserved(&report, 100);
    assert!(report.dispositions.iter().all(|x| *x == Disposition::Delivered));
    assert_eq!(report.delivered_points, 100);
    let delivered: usize =
        d.transport().bodies.iter().filter(|b| points_in(b) <= 7).map(|b| points_in(b)).sum();
    assert_eq!(delivered, 100, "each record delivered exactly once");
}

#[test]
fn a_single_record_still_too_large_is_dead() {
    let mut records = metrics(10);
    records[4] = metric(4, "huge");
    let mut d = Dispatcher::new(
        scripted(|b| Ok(if b.contains("huge") { 413 } else { 202 })),
        config().tap(|c| c.max_points = 1000),
    );
    let report = d.send_metrics(&records);
    assert_conserved(&report, 10);
    assert_eq!(report.dead, 1);
    assert_eq!(report.dispositions[4], Disposition::Dead { reason: "http_413".into() });
}

#[test]
fn bad_request_bisection_isolates_exactly_the_poison_records() {
    let poison = [17, 500, 999];
    let records: Vec<Record> =
        (0..1000).map(|i| metric(i, if poison.contains(&i) { "poison" } else { "m" })).collect();
    let mut d = Dispatcher::new(scripted(|b| Ok(if b.contains("poison") { 400 } else { 202 })), config());
    let report = d.send_metrics(&records);
    assert_conserved(&report, 1000);
    for (i, disp) in report.dispositions.iter().enumerate() {
        if poison.contains(&i) {
            assert_eq!(*disp, Disposition::Dead { reason: "http_400".into() });
        } else {
            assert_eq!(*disp, Disposition::Delivered, "record {i}");
        }
    }
    assert_eq!(report.delivered_points, 997);
    assert!(report.requests <= 60, "{} requests", report.requests);
    // No record was delivered twice.
    let delivered: usize =
        d.transport().bodies.iter().filter(|b| !b.contains("poison")).map(|b| points_in(b)).sum();
    assert_eq!(delivered, 997);
    assert_eq!(d.ready_at(Destination::Metrics), None);
}

#[test]
fn other_client_errors_are_bisected_like_400() {
    let records: Vec<Record> = (0..8).map(|i| metric(i, if i == 3 { "poison" } else { "m" })).collect();
    let mut d = Dispatcher::new(scripted(|b| Ok(if b.contains("poison") { 422 } else { 202 })), config());
    let report = d.send_metrics(&records);
    assert_conserved(&report, 8);
    assert_eq!(report.dispositions[3], Disposition::Dead { reason: "http_422".into() });
    assert_eq!(report.dead, 1);
}

#[test]
fn forbidden_keeps_everything_and_backs_off_without_requests() {
    let mut d = Dispatcher::new(scripted(|_| Ok(403)), config());
    let now = Instant::now();
    let report = d.send_metrics_at(now, &metrics(50));
    assert_conserved(&report, 50);
    assert_eq!((report.retried, report.requests), (50, 1));
    assert_eq!(report.last_status.as_deref(), Some("403"));
    assert!(d.ready_at(Destination::Metrics).is_some());
    // Still backing off: nothing is sent.
    let again = d.send_metrics_at(now, &metrics(50));
    assert_conserved(&again, 50);
    assert_eq!((again.requests, again.retried), (0, 50));
    assert_eq!(d.transport().headers.len(), 1);
}

#[test]
fn unauthorized_logs_keep_everything() {
    let mut d = Dispatcher::new(scripted(|_| Ok(401)), config());
    let report = d.send_logs(&(0..5).map(log_record).collect::<Vec<_>>());
    assert_conserved(&report, 5);
    assert_eq!(report.retried, 5);
}

#[test]
fn server_errors_keep_and_back_off_with_growing_delays_then_success_resets() {
    let mut failing = true;
    let transport = scripted(move |_| Ok(if failing { 503 } else { 202 }));
    let _ = &mut failing;
    let mut d = Dispatcher::new(transport, config()).with_backoff(Backoff::new(
        Duration::from_secs(1),
        Duration::from_secs(120),
        9,
    ));
    let start = Instant::now();
    let mut now = start;
    let mut ceilings = Vec::new();
    for n in 1..=8u32 {
        let report = d.send_metrics_at(now, &metrics(20));
        assert_conserved(&report, 20);
        assert_eq!((report.retried, report.requests), (20, 1));
        assert_eq!(d.backoff(Destination::Metrics).failures(), n);
        let at = d.backoff(Destination::Metrics).poll_timeout().expect("backing off");
        let delay = at - now;
        assert!(delay <= d.backoff(Destination::Metrics).ceiling(n) && delay >= MIN_DELAY, "{n}: {delay:?}");
        ceilings.push(d.backoff(Destination::Metrics).ceiling(n).as_secs());
        now = at;
    }
    assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 120]);
}

#[test]
fn success_resets_the_backoff() {
    let mut answers = vec![503u16, 429, 202].into_iter();
    let mut d = Dispatcher::new(scripted(move |_| Ok(answers.next().unwrap_or(202))), config())
        .with_backoff(Backoff::new(Duration::from_secs(1), Duration::from_secs(120), 3));
    let mut now = Instant::now();
    for _ in 0..2 {
        let r = d.send_metrics_at(now, &metrics(3));
        assert_eq!(r.retried, 3);
        now = d.backoff(Destination::Metrics).poll_timeout().expect("backing off");
    }
    assert_eq!(d.backoff(Destination::Metrics).failures(), 2);
    let r = d.send_metrics_at(now, &metrics(3));
    assert_eq!(r.dispositions, vec![Disposition::Delivered; 3]);
    assert_eq!(
        (d.backoff(Destination::Metrics).failures(), d.backoff(Destination::Metrics).poll_timeout()),
        (0, None)
    );
}

#[test]
fn network_errors_keep_the_rest_of_the_batch() {
    // First chunk goes through, then the connection resets: the rest is kept, not sent.
    let mut calls = 0;
    let mut c = config();
    c.max_points = 10;
    let mut d = Dispatcher::new(
        scripted(move |_| {
            calls += 1;
            if calls == 1 {
                Ok(202)
            } else {
                Err(TransportError::ConnectionReset { url: "http://intake.test".into() })
            }
        }),
        c,
    );
    let report = d.send_metrics(&metrics(30));
    assert_conserved(&report, 30);
    assert_eq!(report.requests, 2);
    assert_eq!(&report.dispositions[..10], &vec![Disposition::Delivered; 10][..]);
    assert_eq!(report.retried, 20);
    assert_eq!(report.last_status.as_deref(), Some("reset"));
    assert!(d.ready_at(Destination::Metrics).is_some());
}

#[test]
fn unparseable_and_orphan_records_are_dead_at_once() {
    let mut records = metrics(4);
    records[0].value = Some(b"{not json".to_vec().into());
    records[1].value = None;
    records[2].value = Some(br#"{"metric": "m", "type": "gauge"}"#.to_vec().into());
    let mut d = Dispatcher::new(scripted(|_| Ok(202)), config());
    let report = d.send_metrics(&records);
    assert_conserved(&report, 4);
    let reasons: Vec<String> = report.dispositions[..3]
        .iter()
        .map(|d| match d {
            Disposition::Dead { reason } => reason.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(reasons, ["not_json", "orphan", "missing_field:points"]);
    assert_eq!(report.dispositions[3], Disposition::Delivered);
}

#[test]
fn nothing_valid_means_no_request() {
    let records = vec![Record {
        oversize: None,
        id: b"x".to_vec().into(),
        score: 0.0,
        value: Some(b"[]".to_vec().into()),
    }];
    let mut d = Dispatcher::new(scripted(|_| Ok(202)), config());
    let report = d.send_metrics(&records);
    assert_conserved(&report, 1);
    assert_eq!((report.requests, report.dead), (0, 1));
    let logs = d.send_logs(&[]);
    assert_eq!((logs.requests, logs.dispositions.len()), (0, 0));
}

#[test]
fn logs_are_a_json_array_with_joined_ddtags_and_host_in_chunks_of_1000() {
    let mut d = Dispatcher::new(scripted(|_| Ok(200)), config());
    let records: Vec<Record> = (0..2500).map(log_record).collect();
    let report = d.send_logs(&records);
    assert_conserved(&report, 2500);
    assert_eq!((report.requests, report.delivered_points), (3, 2500));
    let t = d.transport();
    assert!(t.bodies[0].starts_with(r#"[{"date": "2026-11-22T01:25:26.038424+00:00", "ddsource": "svc", "ddtags": "a:b,env:test", "level": "INFO", "message": {"msg": "hello 0"}, "service": "svc", "host": "myhost"}, {"#), "{}", &t.bodies[0][..300]);
    let counts: Vec<usize> = t.bodies.iter().map(|b| b.matches("\"date\"").count()).collect();
    assert_eq!(counts, [1000, 1000, 500]);
}

#[test]
fn log_bisection_and_bad_logs() {
    let mut records: Vec<Record> = (0..64).map(log_record).collect();
    records[5].value = Some(br#"{"message": "no date"}"#.to_vec().into());
    records[40].value =
        Some(br#"{"date": "2026-11-22T01:25:26.038424+00:00", "message": "poison"}"#.to_vec().into());
    let mut d = Dispatcher::new(scripted(|b| Ok(if b.contains("poison") { 400 } else { 202 })), config());
    let report = d.send_logs(&records);
    assert_conserved(&report, 64);
    assert_eq!(report.dispositions[5], Disposition::Dead { reason: "missing_field:date".into() });
    assert_eq!(report.dispositions[40], Disposition::Dead { reason: "http_400".into() });
    assert_eq!(report.delivered_points, 62);
}

#[test]
fn a_payload_over_the_compressed_limit_is_split_before_sending() {
    let mut c = config();
    c.series_max_compressed_bytes = 200;
    let mut d = Dispatcher::new(scripted(|_| Ok(202)), c);
    let report = d.send_metrics(&metrics(50));
    assert_conserved(&report, 50);
    assert_eq!(report.delivered_points, 50);
    assert!(report.requests > 1);
}

#[test]
fn bodies_are_compressed_at_the_configured_level() {
    let mut sizes = Vec::new();
    for level in [0, 1, 6, 9] {
        let mut c = config();
        c.compression_level = level;
        let mut d = Dispatcher::new(scripted(|_| Ok(202)), c);
        let report = d.send_metrics(&metrics(200));
        assert_eq!(report.delivered_points, 200);
        let ([body], [json]) = (&d.transport.posted[..], &d.transport.bodies[..]) else {
            panic!("one request: {}", d.transport.posted.len())
        };
        assert_eq!(*body, zlib::compress(json.as_bytes(), level), "level {level}");
        if level == 0 {
            assert!(body.len() > json.len(), "level 0 stores: {} for {}", body.len(), json.len());
        }
        sizes.push(body.len());
    }
    // Stored, then smaller with each level (6 and 9 can tie on a small payload).
    assert!(sizes[0] > sizes[1] && sizes[1] > sizes[2] && sizes[2] >= sizes[3], "{sizes:?}");
}

#[test]
fn dry_run_renders_points_and_logs() {
    let mut d = Dispatcher::new(DryRunTransport::new(Vec::new()), config());
    let r = d.send_metrics(&metrics(2));
    assert_eq!(r.dispositions, vec![Disposition::Delivered; 2]);
    let r = d.send_logs(&[log_record(0)]);
    assert_eq!(r.dispositions, vec![Disposition::Delivered]);
    let text = String::from_utf8(d.transport.into_inner()).expect("utf-8");
    assert!(text.contains("m{i:0,env:test} gauge 0 @1795310770 interval=- host=myhost\n"), "{text}");
    assert!(text.contains("m{i:1,env:test} gauge 1 @1795310770"), "{text}");
    assert!(text.contains("log {\"date\""), "{text}");
    assert!(!text.contains("k3y"));
}

#[test]
fn urls_come_from_the_config() {
    let c = DispatchConfig::for_base_url("http://localhost:8428/datadog/", None);
    assert_eq!(c.series_url, "http://localhost:8428/datadog/v1/series");
    assert_eq!(c.logs_url, "http://localhost:8428/datadog/v1/input");
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for DispatchConfig {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[test]
fn settle_scripted_conserves_and_stops() {
    // Pure settle: 16 records, 400 when record 9 is in the group, 503 on the 4th request.
    let mut calls = 0;
    let mut out = vec![None; 16];
    let group: Vec<usize> = (0..16).collect();
    let stopped = settle(
        &group,
        &mut |g: &[usize]| {
            calls += 1;
            if calls == 4 {
                Verdict::Stop
            } else if g.contains(&9) {
                Verdict::Rejected { reason: "http_400".into() }
            } else {
                Verdict::Delivered
            }
        },
        &mut out,
    );
    assert_eq!(stopped, Outcome::Stopped);
    assert!(out.iter().all(Option::is_some));
    // [0..8) delivered, [8..12) failed, [8..10) failed, then 503: the rest kept.
    assert_eq!(out[0], Some(Disposition::Delivered));
    assert_eq!(out[9], Some(Disposition::Kept));
    assert_eq!(out[15], Some(Disposition::Kept));
}

#[test]
fn a_backend_refusing_every_record_dead_letters_nothing_and_backs_off() {
    // A typo in DATADOG_URL on VictoriaMetrics: 400 to every request.
    let mut c = config();
    c.max_points = 100_000;
    let mut d = Dispatcher::new(scripted(|_| Ok(400)), c);
    let now = Instant::now();
    let report = d.send_metrics_at(now, &metrics(10_000));
    assert_conserved(&report, 10_000);
    assert_eq!((report.dead, report.retried), (0, 10_000));
    assert_eq!(report.outcome, Outcome::Refused { reason: "http_400".into() });
    assert_eq!(report.requests, 39, "O(log n): 1 + 13 + 13 + 12 requests, not 10,000");
    assert!(d.backoff(Destination::Metrics).is_waiting(now));
    let stats = d.stats(Destination::Metrics);
    assert_eq!((stats.requests, stats.failures, stats.dead, stats.retried), (39, 1, 0, 10_000));
    assert_eq!(stats.last_status.as_deref(), Some("400"));
    // Logs have their own backoff: not waiting.
    assert!(!d.backoff(Destination::Logs).is_waiting(now));
}

#[test]
fn wrong_endpoint_statuses_keep_everything_after_one_request() {
    for status in [301, 302, 404, 405, 410, 411, 415, 421, 426] {
        let mut d = Dispatcher::new(scripted(move |_| Ok(status)), config());
        let report = d.send_metrics(&metrics(100));
        assert_conserved(&report, 100);
        assert_eq!((report.requests, report.retried, report.dead), (1, 100, 0), "{status}");
        assert_eq!(report.outcome, Outcome::Stopped, "{status}");
        assert!(d.ready_at(Destination::Metrics).is_some(), "{status}");
    }
}

#[test]
fn destinations_back_off_independently() {
    // Metrics refused at the network level, logs accepted.
    let transport = scripted(|body: &str| {
        if body.starts_with('[') {
            Ok(202)
        } else {
            Err(TransportError::ConnectRefused { url: "http://metrics.test".into() })
        }
    });
    let mut d = Dispatcher::new(transport, config());
    let now = Instant::now();
    let m = d.send_metrics_at(now, &metrics(10));
    assert_eq!((m.retried, m.outcome.clone()), (10, Outcome::Stopped));
    assert!(d.backoff(Destination::Metrics).is_waiting(now));
    let l = d.send_logs_at(now, &(0..200).map(log_record).collect::<Vec<_>>());
    assert_conserved(&l, 200);
    assert_eq!(l.dispositions, vec![Disposition::Delivered; 200]);
    assert!(!d.backoff(Destination::Logs).is_waiting(now));
    assert_eq!(d.stats(Destination::Logs).delivered, 200);
    assert_eq!((d.stats(Destination::Metrics).failures, d.stats(Destination::Logs).failures), (1, 0));
}

#[test]
fn a_passed_deadline_defers_without_a_failure() {
    let mut d = Dispatcher::new(scripted(|_| Ok(202)), config());
    let report = d.send_until(Destination::Metrics, &metrics(10), Instant::now());
    assert_conserved(&report, 10);
    assert_eq!((report.requests, report.deferred, report.retried), (0, 10, 0));
    assert_eq!(report.outcome, Outcome::OutOfTime);
    assert_eq!(d.ready_at(Destination::Metrics), None, "no backoff");
    assert_eq!(d.stats(Destination::Metrics).failures, 0);
}

#[test]
fn a_deadline_mid_bisection_keeps_the_rest_without_a_failure() {
    // 1000 records, one poison at 900; the 3rd request lasts past the deadline.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut calls = 0;
    let mut records = metrics(1000);
    records[900] = metric(900, "poison");
    let mut d = Dispatcher::new(
        scripted(move |b: &str| {
            calls += 1;
            if calls == 3 {
                std::thread::sleep(
                    deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(5),
                );
            }
            Ok(if b.contains("poison") { 400 } else { 202 })
        }),
        config(),
    );
    let report = d.send_until(Destination::Metrics, &records, deadline);
    assert_conserved(&report, 1000);
    // 400 on [0, 1000); [0, 500) and [500, 750) delivered; then out of time: [750, 1000) kept.
    assert_eq!(report.requests, 3);
    assert_eq!(report.outcome, Outcome::OutOfTime);
    assert_eq!(&report.dispositions[..750], &vec![Disposition::Delivered; 750][..]);
    assert_eq!(&report.dispositions[750..], &vec![Disposition::Kept; 250][..]);
    assert_eq!((report.dead, report.retried, report.deferred), (0, 0, 250));
    assert_eq!(d.ready_at(Destination::Metrics), None, "progress was made: no backoff");
    assert_eq!(d.stats(Destination::Metrics).failures, 0);
}

#[test]
fn a_refused_first_chunk_ends_the_call_without_trying_the_others() {
    let mut c = config();
    c.max_points = 10;
    let mut d = Dispatcher::new(scripted(|_| Ok(422)), c);
    let report = d.send_metrics(&metrics(25));
    assert_conserved(&report, 25);
    assert_eq!(report.outcome, Outcome::Refused { reason: "http_422".into() });
    // Chunk [0, 10): 1 whole + 3 left halves (5, 2, 1) + 3 right halves (5, 3, 1) + the last
    // record of the two longer ones; chunks 2 and 3 untried.
    assert_eq!((report.requests, report.dead, report.retried), (9, 0, 25));
}

#[test]
fn an_all_poison_chunk_after_an_accepted_one_is_dead_lettered() {
    // Evidence carries across the chunks of one call: chunk 2 is all poison, chunk 1 was fine.
    let mut c = config();
    c.max_points = 10;
    let records: Vec<Record> = (0..20).map(|i| metric(i, if i >= 10 { "poison" } else { "m" })).collect();
    let mut d = Dispatcher::new(scripted(|b| Ok(if b.contains("poison") { 400 } else { 202 })), c);
    let report = d.send_metrics(&records);
    assert_conserved(&report, 20);
    assert_eq!(report.outcome, Outcome::Settled);
    assert_eq!(&report.dispositions[..10], &vec![Disposition::Delivered; 10][..]);
    assert_eq!(&report.dispositions[10..], &vec![Disposition::Dead { reason: "http_400".into() }; 10][..]);
}

/// A transport answering `(status, body)` from a script, recording each plain payload.
struct Answering<F> {
    answer: F,
    payloads: Vec<String>,
}

impl<F> Transport for Answering<F>
where
    F: FnMut(&str) -> (u16, String) + Send,
{
    fn post(&mut self, _: &str, _: &[(&str, &str)], _: &[u8]) -> Result<HttpResponse, TransportError> {
        unreachable!("the dispatcher posts through post_payload")
    }

    fn post_payload(
        &mut self,
        _url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        plain: &[u8],
    ) -> Result<HttpResponse, TransportError> {
        assert!(headers.contains(&("Content-Encoding", "gzip")));
        assert_eq!(gzip::decompress(body).expect("gzip body"), plain);
        let plain = String::from_utf8(plain.to_vec()).expect("utf-8");
        let (status, body) = (self.answer)(&plain);
        self.payloads.push(plain);
        Ok(HttpResponse::new(status, body))
    }
}

fn hub_config() -> crate::config::Config {
    crate::config::Config::from_vars(
        [
            ("INFLUXDB_URL", "http://influx.test:8086"),
            ("OPENTSDB_URL", "http://tsdb.test:4242"),
            ("HOST", "h"),
            ("CHOUETTE_STATE_DIR", "/tmp"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
    .expect("config")
}

fn hub<F>(answer: F, destination: Destination) -> Dispatcher<Answering<F>>
where
    F: FnMut(&str) -> (u16, String) + Send,
{
    let config = hub_config();
    let dispatch = DispatchConfig::from_config(&config);
    let outputs: Vec<Box<dyn Output>> =
        outputs(&config, &dispatch).into_iter().filter(|o| o.destination() == destination).collect();
    assert_eq!(outputs.len(), 1);
    Dispatcher::with_outputs(Answering { answer, payloads: Vec::new() }, dispatch, outputs)
}

#[test]
fn influxdb_partial_write_dead_letters_the_quoted_line_only_in_one_request() {
    let mut d = hub(
        |body| {
            let bad = body.lines().find(|l| l.contains(",i=3 ")).expect("line of record 3").to_owned();
            (
                400,
                format!(
                    "{{\"error\":\"partial write: unable to parse '{bad}': invalid number dropped=1\"}}\n"
                ),
            )
        },
        Destination::Influxdb,
    );
    let records = metrics(8).into_iter().collect::<Vec<_>>();
    let report = d.send_at(Destination::Influxdb, Instant::now(), None, &records);
    assert_conserved(&report, 8);
    assert_eq!(report.requests, 1, "no bisection, nothing resent");
    for (i, disposition) in report.dispositions.iter().enumerate() {
        let want = if i == 3 {
            Disposition::Dead { reason: "influxdb_unparseable".into() }
        } else {
            Disposition::Delivered
        };
        assert_eq!(*disposition, want, "record {i}");
    }
    assert_eq!(report.delivered_points, 7);
    assert_eq!(d.transport().payloads[0].lines().count(), 8);
    assert!(
        d.transport().payloads[0].starts_with("m,host=h,i=0 value=0 1795310770\n"),
        "{}",
        d.transport().payloads[0]
    );
}

#[test]
fn influxdb_refusal_that_names_no_record_is_bisected() {
    // Not a partial write: nothing was stored, the shared rule finds the one offender.
    let mut d = hub(
        |body| {
            if body.contains(",i=5 ") {
                (400, "{\"error\":\"unable to parse\"}".into())
            } else {
                (204, String::new())
            }
        },
        Destination::Influxdb,
    );
    let report = d.send_at(Destination::Influxdb, Instant::now(), None, &metrics(8));
    assert_conserved(&report, 8);
    assert_eq!(report.dispositions[5], Disposition::Dead { reason: "http_400".into() });
    assert_eq!(report.dispositions.iter().filter(|d| **d == Disposition::Delivered).count(), 7);
}

#[test]
fn opentsdb_details_dead_letter_exactly_the_refused_points() {
    let mut d = hub(
        |_| {
            (
                400,
                r#"{"success": 6, "failed": 2, "errors": [
                    {"datapoint": {"metric": "m", "timestamp": 1795310770, "value": 2, "tags": {"i": "2"}}, "error": "bad"},
                    {"datapoint": {"metric": "m", "timestamp": 1795310770, "value": 6, "tags": {"i": "6"}}, "error": "bad"}]}"#
                    .into(),
            )
        },
        Destination::Opentsdb,
    );
    // Distinct names so a datapoint matches one record only.
    let records: Vec<Record> =
        (0..8).map(|i| metric(i, if i == 2 || i == 6 { "m" } else { "other" })).collect();
    let report = d.send_at(Destination::Opentsdb, Instant::now(), None, &records);
    assert_conserved(&report, 8);
    assert_eq!(report.requests, 1);
    let dead: Vec<usize> = report
        .dispositions
        .iter()
        .enumerate()
        .filter(|(_, d)| matches!(d, Disposition::Dead { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(dead, [2, 6]);
    // Entries are sorted by their bytes (name first): the two "m" points lead.
    let payload = &d.transport().payloads[0];
    assert!(
        payload.starts_with(
            r#"[{"metric": "m", "timestamp": 1795310770, "value": 2, "tags": {"host": "h", "i": "2"}}, {"metric": "m", "#
        ),
        "{payload}"
    );
}

#[test]
fn opentsdb_points_without_tags_are_dead_at_once() {
    let mut config = hub_config();
    config.host = None;
    let dispatch = DispatchConfig::from_config(&config);
    let outputs: Vec<Box<dyn Output>> = outputs(&config, &dispatch)
        .into_iter()
        .filter(|o| o.destination() == Destination::Opentsdb)
        .collect();
    let transport = Answering { answer: |_: &str| (204, String::new()), payloads: Vec::new() };
    let mut d = Dispatcher::with_outputs(transport, dispatch, outputs);
    let bare = Record::new("bare", 1.0, r#"{"metric": "m", "points": [[1795310770.0, 1]], "type": "gauge"}"#);
    let report = d.send_at(Destination::Opentsdb, Instant::now(), None, &[bare, metric(1, "m")]);
    assert_eq!(report.dispositions, [Disposition::Dead { reason: "no_tags".into() }, Disposition::Delivered]);
}

#[test]
fn each_output_counts_points_sent_accepted_and_failed() {
    let mut fail = true;
    let mut d =
        Dispatcher::new(scripted(move |_| Ok(if std::mem::take(&mut fail) { 503 } else { 202 })), config())
            .with_backoff(Backoff::new(Duration::ZERO, Duration::ZERO, 1));
    let first = d.send_metrics(&metrics(5));
    assert_eq!((first.sent_points, first.failed_points, first.delivered_points), (5, 5, 0));
    assert_eq!(first.latencies.len(), 1);
    let second = d.send_metrics(&metrics(5));
    assert_eq!((second.sent_points, second.failed_points, second.delivered_points), (5, 0, 5));
    let stats = d.stats(Destination::Metrics);
    assert_eq!((stats.points_sent, stats.points_failed, stats.points_delivered), (10, 5, 5));
}

#[test]
fn a_closed_gate_sends_nothing_and_counts_nothing_an_open_one_is_asked_once() {
    let mut d =
        Dispatcher::new(scripted(|b: &str| Ok(if b.contains("poison") { 400 } else { 202 })), config());
    let far = Instant::now() + Duration::from_secs(60);
    let before = d.stats(Destination::Metrics);
    let mut asked = 0;
    let report = d.send_gated(Destination::Metrics, &metrics(10), far, &mut || {
        asked += 1;
        false
    });
    assert_conserved(&report, 10);
    assert_eq!((asked, report.requests, report.outcome.clone()), (1, 0, Outcome::OutOfTime));
    assert!(report.dispositions.iter().all(|d| *d == Disposition::Kept));
    assert!(d.transport().bodies.is_empty());
    assert_eq!(d.stats(Destination::Metrics), before, "nothing counted");
    assert_eq!(d.ready_at(Destination::Metrics), None, "no backoff");

    // Open: asked once, before the first request, however many a bisection makes.
    let mut records = metrics(8);
    records[5] = metric(5, "poison");
    let mut asked = 0;
    let report = d.send_gated(Destination::Metrics, &records, far, &mut || {
        asked += 1;
        true
    });
    assert_conserved(&report, 8);
    assert!(report.requests > 2, "{report:?}");
    assert_eq!(asked, 1);
    assert_eq!(report.dead, 1);
    assert_eq!(d.stats(Destination::Metrics).delivered, 7);
}

#[test]
fn payloads_sort_by_keys_as_a_whole_byte_comparison_would() {
    // Entries sharing long prefixes, prefixes of one another, equal ones, ties in the first 16
    // bytes after the shared prefix, and an empty one: the keyed sort's order is the order of
    // sorting the entries' bytes whole.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..500 {
        let mut bytes = Vec::new();
        let mut spans = Vec::new();
        let shared = [&b""[..], b"{\"metric\":\"", b"{\"metric\":\"sensor.temperature.board."][round % 3];
        for _ in 0..1 + next(60) {
            let start = bytes.len();
            if next(10) > 0 {
                bytes.extend_from_slice(shared);
            }
            // Few, some long, tokens: long equal stretches, so runs of equal keys go on over
            // several 16-byte digits.
            let tokens: [&[u8]; 7] = [
                b"a",
                b"b",
                b"\0",
                b"\xff",
                b"\",\"points\":[[1795310770,",
                b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
                b".",
            ];
            for _ in 0..next(12) {
                bytes.extend_from_slice(tokens[next(7) as usize]);
            }
            spans.push(start..bytes.len());
        }
        let entries = Entries { bytes: &bytes, spans: &spans };
        let mut group = Vec::new();
        sort_by_bytes(&(0..spans.len()).collect::<Vec<_>>(), &entries, &mut group);
        let keyed: Vec<&[u8]> = group.iter().map(|&i| entries.get(i)).collect();
        let mut whole: Vec<&[u8]> = (0..spans.len()).map(|i| entries.get(i)).collect();
        whole.sort_unstable();
        assert_eq!(keyed, whole, "round {round}");
        let mut seen = group.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..spans.len()).collect::<Vec<_>>(), "each record once");
    }
}
