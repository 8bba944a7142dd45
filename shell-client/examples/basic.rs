//! Every metric call, against `REDIS_URL` (or `REDIS_HOST`/`REDIS_PORT`).
//! `cargo run -p chouette-client --example basic`

use std::time::Duration;

use chouette_client::{Client, Member, TimeUnit};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::from_env()?;
    client.count("example.orders", 1, &[("shop", "eu")]);
    client.increment("example.logins", 1, &[]);
    client.decrement("example.stock", 3, &[]);
    client.gauge("example.queue_depth", 17, &[]);
    client.rate("example.bytes_in", 512, &[]);
    client.histogram("example.order_value", 12.5, &[]);
    client.set("example.users", &[Member::Str("ann"), Member::Str("bob")], &[]);
    {
        let _t = client.timed_in("example.step_ms", &[], TimeUnit::Milliseconds);
        std::thread::sleep(Duration::from_millis(20));
    }
    let answer = client.time("example.compute_seconds", &[], || 6 * 7);
    println!("computed {answer}; stats before shutdown: {:?}", client.stats());
    client.shutdown(Duration::from_secs(2))?;
    println!("after shutdown: {:?}", client.stats());
    Ok(())
}
