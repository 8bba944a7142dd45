//! The drain's ceiling in Redis, for `scripts/bench-agent.sh`: reads and deletes every raw record
//! with the fewest commands (`ZRANGE … WITHSCORES`, `HMGET`, then `ZREM` and `HDEL` in one
//! `MULTI`), in chunks of 10,000, and does nothing else with them. The script reads Redis's own CPU
//! time around it: records per Redis CPU-second is the most any drain could reach on this Redis.
//! `redis_ceiling REDIS_URL [lengths]`: `lengths` also asks `HSTRLEN` of every id (as the agent
//! does, to refuse values too large to load), to price that check.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).map_or("redis://127.0.0.1:6379/0", String::as_str);
    let lengths = args.get(2).is_some_and(|a| a == "lengths");
    let (keys, values) = ("chouette:metrics:raw.keys", "chouette:metrics:raw.values");
    let mut con = redis::Client::open(url)?.get_connection()?;
    let mut total = 0usize;
    loop {
        let page: Vec<(Vec<u8>, f64)> =
            redis::cmd("ZRANGE").arg(keys).arg(0).arg(9_999).arg("WITHSCORES").query(&mut con)?;
        if page.is_empty() {
            break;
        }
        let ids: Vec<&[u8]> = page.iter().map(|(id, _)| id.as_slice()).collect();
        if lengths {
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("HSTRLEN").arg(values).arg(id);
            }
            let _: Vec<u64> = pipe.query(&mut con)?;
        }
        let _: Vec<Option<Vec<u8>>> = redis::cmd("HMGET").arg(values).arg(&ids).query(&mut con)?;
        redis::pipe()
            .atomic()
            .cmd("ZREM")
            .arg(keys)
            .arg(&ids)
            .ignore()
            .cmd("HDEL")
            .arg(values)
            .arg(&ids)
            .ignore()
            .query::<()>(&mut con)?;
        total += page.len();
    }
    println!("{total}");
    Ok(())
}
