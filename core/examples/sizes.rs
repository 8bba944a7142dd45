//! Prints the memory of the aggregator aliases and the sketches (`cargo run --example sizes`).
use chouette_core::aggregate::{BoardAggregator, GatewayAggregator, SmallAggregator};
use chouette_core::limits::SKETCH_BINS;
use chouette_core::sketch::{Histogram, QuantileSketch, SetCounter};
use core::mem::size_of;

fn main() {
    println!("| type | bytes |");
    println!("|---|---|");
    println!("| SmallAggregator (32 series, 2 sketches, 4 KiB keys) | {} |", size_of::<SmallAggregator>());
    println!(
        "| BoardAggregator (1024 series, 64 sketches, 64 KiB keys) | {} |",
        size_of::<BoardAggregator>()
    );
    println!(
        "| GatewayAggregator (10240 series, 1024 sketches, 1 MiB keys) | {} |",
        size_of::<GatewayAggregator>()
    );
    println!("| QuantileSketch<{SKETCH_BINS}> | {} |", size_of::<QuantileSketch<SKETCH_BINS>>());
    println!("| Histogram | {} |", size_of::<Histogram>());
    println!("| SetCounter | {} |", size_of::<SetCounter>());
}
