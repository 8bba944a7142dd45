//! The `log` bridge. `CHOUETTE_LOG_LEVEL=info cargo run -p chouette-client --example log`

use std::time::Duration;

use chouette_client::{ChouetteLogger, Client};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::from_env()?;
    ChouetteLogger::new(client.clone(), "example-shop")?.init()?;
    log::info!(tags = "team:pay,region:eu", order = 17; "order {} paid", 17);
    log::warn!(tag_tier = "gold", latency_ms = 950; "slow checkout");
    log::debug!("shipped unless CHOUETTE_LOG_LEVEL filters it");
    client.shutdown(Duration::from_secs(2))?;
    Ok(())
}
