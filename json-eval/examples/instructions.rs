//! Parses one group of records N times with one parser, for an instruction count under valgrind
//! (`json-eval/instructions.sh`): unlike times on a shared machine, counts do not vary from run
//! to run. Usage: `instructions <scanner|serde> <raw|raw-numbers|raw-escaped|wrapped|log> <N>`.

use std::hint::black_box;

use chouette_core::wire::log::parse_log;
use chouette_core::wire::raw::parse_raw_metric;
use chouette_core::wire::wrapped::parse_wrapped;
use chouette_json_eval as proto;
use chouette_json_eval::inputs::{LOG, RAW_ESCAPED, RAW_MIX, WRAPPED};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, parser, group, n] = &args[..] else {
        eprintln!("usage: instructions <scanner|serde> <raw|raw-numbers|raw-escaped|wrapped|log> <N>");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N is a number");
    let serde = match parser.as_str() {
        "scanner" => false,
        "serde" => true,
        other => panic!("unknown parser {other}"),
    };
    let records: Vec<&str> = match group.as_str() {
        "raw" => RAW_MIX.to_vec(),
        "raw-numbers" => RAW_MIX.iter().copied().filter(|r| !r.contains("\"set\"")).collect(),
        "raw-escaped" => vec![RAW_ESCAPED],
        "wrapped" => vec![WRAPPED],
        "log" => vec![LOG],
        other => panic!("unknown group {other}"),
    };
    let mut scratch = [0u8; 1024];
    let mut ok = 0usize;
    for _ in 0..n {
        for record in &records {
            let input = black_box(record.as_bytes());
            ok += usize::from(match (serde, group.as_str()) {
                (false, "wrapped") => parse_wrapped(input, &mut scratch).is_ok(),
                (true, "wrapped") => proto::parse_wrapped(input, &mut scratch).is_ok(),
                (false, "log") => parse_log(input).is_ok(),
                (true, "log") => proto::parse_log(input).is_ok(),
                (false, _) => parse_raw_metric(input, &mut scratch).is_ok(),
                (true, _) => proto::parse_raw(input, &mut scratch).is_ok(),
            });
        }
    }
    assert_eq!(ok, n * records.len(), "every record parses");
    println!("{}", records.len());
}
