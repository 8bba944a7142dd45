//! Fills a Redis with raw records in the original client's layout, for the drain benchmark:
//! `fill_raw REDIS_URL RECORDS SERIES SPAN_SECS END_SECS_AGO`.
//! Series are spread over the five types (count, gauge, rate, histogram, set).

use std::time::{SystemTime, UNIX_EPOCH};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let url = arg(1, "redis://127.0.0.1:6379/0");
    let records: u64 = arg(2, "1000000").parse()?;
    let series: u64 = arg(3, "1000").parse()?;
    let span: f64 = arg(4, "300").parse()?;
    let ago: f64 = arg(5, "60").parse()?;
    let end = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64() - ago;
    let start = end - span;
    let mut con = redis::Client::open(url.as_str())?.get_connection()?;
    let types = ["count", "gauge", "rate", "histogram", "set"];
    let mut pipe = redis::pipe();
    for i in 0..records {
        let s = i % series;
        let kind = types[(s % 5) as usize];
        let ts = start + span * (i as f64 / records as f64);
        let value = match kind {
            "set" => format!(r#"["user-{}", "user-{}"]"#, i % 37, i % 11),
            _ => format!("{}", (i % 1000) as f64 / 4.0),
        };
        let json = format!(
            r#"{{"metric": "bench.{kind}.m{}", "type": "{kind}", "value": {value}, "timestamp": {ts:?}, "tags": {{"board": "b{}", "unit": "u{}"}}}}"#,
            s / 5,
            s % 10,
            s % 3
        );
        let id = format!("{:08x}-0000-4000-8000-{:012x}", i >> 16, i);
        pipe.cmd("ZADD").arg("chouette:metrics:raw.keys").arg(ts).arg(&id).ignore();
        pipe.cmd("HSET").arg("chouette:metrics:raw.values").arg(&id).arg(json).ignore();
        if i % 10_000 == 9_999 {
            pipe.query::<()>(&mut con)?;
            pipe = redis::pipe();
        }
    }
    pipe.query::<()>(&mut con)?;
    println!("wrote {records} raw records for {series} series over {span} s");
    Ok(())
}
