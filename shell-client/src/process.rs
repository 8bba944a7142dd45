//! The app's process metrics, from `/proc/self` (Linux; elsewhere nothing is written).

use crate::render::Number;

/// Clock ticks per second of `/proc/self/stat`'s CPU times: `USER_HZ`, 100 on every Linux
/// architecture this client targets.
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads the process metrics.
#[derive(Debug, Default)]
pub(crate) struct ProcessReader;

impl ProcessReader {
    pub fn new() -> Self {
        ProcessReader
    }

    /// `(name, value)` for what could be read: CPU seconds (user + system, since start), RSS
    /// bytes, threads, open file descriptors.
    pub fn read(&mut self) -> Vec<(&'static str, Number)> {
        let mut out = Vec::new();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            if let Some((cpu, threads)) = parse_stat(&stat) {
                out.push(("chouette.client.process.cpu_seconds", Number::Float(cpu)));
                out.push(("chouette.client.process.threads", Number::Int(threads)));
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(rss) = parse_rss_bytes(&status) {
                out.push(("chouette.client.process.rss_bytes", Number::Int(rss)));
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries.
            let fds = dir.count().saturating_sub(1);
            out.push(("chouette.client.process.open_fds", Number::from(fds)));
        }
        out
    }
}

/// CPU seconds and thread count from `/proc/self/stat` (fields after the `comm` in parentheses).
fn parse_stat(stat: &str) -> Option<(f64, i64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15, num_threads 20.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let threads: i64 = fields.get(17)?.parse().ok()?;
    Some(((utime + stime) / TICKS_PER_SECOND, threads))
}

fn parse_rss_bytes(status: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_fixtures() {
        let stat =
            "1234 (my (odd) app) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 100 1000 200";
        assert_eq!(parse_stat(stat), Some((3.0, 7)));
        assert_eq!(parse_rss_bytes("Name:\tx\nVmRSS:\t    2048 kB\n"), Some(2048 * 1024));
    }

    #[test]
    fn reads_this_process() {
        let got = ProcessReader::new().read();
        if cfg!(target_os = "linux") {
            assert_eq!(got.len(), 4, "{got:?}");
        }
    }
}
