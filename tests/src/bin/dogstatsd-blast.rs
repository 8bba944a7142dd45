//! `dogstatsd-blast`: a paced DogStatsD load generator for `scripts/bench-dogstatsd.sh`.
//!
//! Sends one-line datagrams `bench.c<i>:1|c` (round robin over `--contexts` names, optionally
//! tagged `|#env:bench,ctx:<i>`) to a UDP `host:port` or a Unix datagram socket path, at
//! `--rate` datagrams per second for `--duration` seconds. The pacing is by the monotonic clock:
//! at any instant the datagrams sent so far are `rate × elapsed`, sent in bursts of at most
//! `--burst` through one `sendmmsg(2)` each, sleeping between bursts; a late wake-up is made
//! up by the next bursts, so the average rate holds. With value 1 and the count type, what a
//! server delivers is the sum of the counts it emitted.
//!
//! It prints one line of `key=value` fields on stdout: `sent` (datagrams the kernel accepted,
//! exact), `bytes`, `seconds` (from the first send to the last), `rate` (achieved datagrams/s),
//! `errors` (send errors, each a datagram not sent) and `late_ms` (how far behind the schedule
//! the sender ever fell, so a run whose generator could not keep up is visible).
//!
//! `--rate 0` sends as fast as it can (to measure the generator itself).

use std::io::IoSlice;
use std::net::UdpSocket;
use std::num::NonZeroU64;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags};

const USAGE: &str = "usage: dogstatsd-blast --target HOST:PORT|/path/to/socket [--rate DATAGRAMS_PER_S (0: as fast as possible)] \
[--duration SECONDS] [--contexts N] [--tagged] [--type c|g|ms|h|d|s] [--burst N] [--plain-send]";

/// The largest burst: one `sendmmsg` call (the kernel's UIO_MAXIOV is 1024).
const MAX_BURST: usize = 1024;

struct Options {
    target: String,
    rate: u64,
    duration: Duration,
    contexts: usize,
    tagged: bool,
    kind: String,
    burst: usize,
    plain_send: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        target: String::new(),
        rate: 100_000,
        duration: Duration::from_secs(5),
        contexts: 10_000,
        tagged: false,
        kind: "c".to_owned(),
        burst: 32,
        plain_send: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--target" => options.target = value("--target")?,
            "--rate" => options.rate = number(&value("--rate")?)?,
            "--duration" => {
                let seconds: f64 = value("--duration")?
                    .parse()
                    .map_err(|_| "--duration: not a number of seconds".to_owned())?;
                options.duration = Duration::try_from_secs_f64(seconds)
                    .map_err(|_| "--duration: out of range".to_owned())?;
            }
            "--contexts" => options.contexts = number(&value("--contexts")?)? as usize,
            "--tagged" => options.tagged = true,
            "--type" => options.kind = value("--type")?,
            "--burst" => options.burst = number(&value("--burst")?)? as usize,
            "--plain-send" => options.plain_send = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if options.target.is_empty() {
        return Err(format!("--target is required\n{USAGE}"));
    }
    if options.contexts == 0 {
        return Err("--contexts must be at least 1".to_owned());
    }
    if !(1..=MAX_BURST).contains(&options.burst) {
        return Err(format!("--burst must be within 1..={MAX_BURST}"));
    }
    if !["c", "g", "ms", "h", "d", "s"].contains(&options.kind.as_str()) {
        return Err(format!("--type {}: one of c g ms h d s", options.kind));
    }
    Ok(options)
}

fn number(text: &str) -> Result<u64, String> {
    text.replace('_', "").parse().map_err(|_| format!("{text}: not a whole number"))
}

/// Where the datagrams go: a connected UDP or Unix datagram socket.
enum Target {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Target {
    fn open(target: &str) -> std::io::Result<Target> {
        if target.starts_with('/') || target.starts_with('.') {
            let socket = UnixDatagram::unbound()?;
            socket.connect(target)?;
            Ok(Target::Unix(socket))
        } else {
            let socket = UdpSocket::bind(if target.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" })?;
            socket.connect(target)?;
            Ok(Target::Udp(socket))
        }
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Target::Udp(socket) => socket.as_fd(),
            Target::Unix(socket) => socket.as_fd(),
        }
    }

    fn send(&self, datagram: &[u8]) -> std::io::Result<usize> {
        match self {
            Target::Udp(socket) => socket.send(datagram),
            Target::Unix(socket) => socket.send(datagram),
        }
    }
}

/// Every context's datagram, rendered once: `bench.c<i>:<value>|<type>[|#env:bench,ctx:<i>]`.
fn render_all(contexts: usize, kind: &str, tagged: bool) -> Vec<Vec<u8>> {
    (0..contexts)
        .map(|i| {
            let value = if kind == "s" { i.to_string() } else { "1".to_owned() };
            let mut line = format!("bench.c{i}:{value}|{kind}");
            if tagged {
                line.push_str(&format!("|#env:bench,ctx:{i}"));
            }
            line.into_bytes()
        })
        .collect()
}

#[derive(Default)]
struct Tally {
    sent: u64,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, count: u64, error: std::io::Error) {
        self.errors += count;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }
}

/// Sends `count` datagrams from `next` on (round robin), through `sendmmsg` or one `send` each.
fn send_burst(
    target: &Target,
    datagrams: &[Vec<u8>],
    next: &mut usize,
    count: usize,
    plain_send: bool,
    tally: &mut Tally,
) {
    if plain_send {
        for _ in 0..count {
            let datagram = &datagrams[*next];
            *next = (*next + 1) % datagrams.len();
            match target.send(datagram) {
                Ok(_) => {
                    tally.sent += 1;
                    tally.bytes += datagram.len() as u64;
                }
                Err(error) => tally.error(1, error),
            }
        }
        return;
    }
    let mut slices: [IoSlice<'_>; MAX_BURST] = [IoSlice::new(&[]); MAX_BURST];
    let mut bytes = [0u64; MAX_BURST];
    for (slot, size) in slices.iter_mut().zip(bytes.iter_mut()).take(count) {
        let datagram = &datagrams[*next];
        *next = (*next + 1) % datagrams.len();
        *slot = IoSlice::new(datagram);
        *size = datagram.len() as u64;
    }
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
        (0..count).map(|_| SendAncillaryBuffer::default()).collect();
    let mut headers: Vec<MMsgHdr<'_>> = slices[..count]
        .iter()
        .zip(controls.iter_mut())
        .map(|(slice, control)| MMsgHdr::new(std::slice::from_ref(slice), control))
        .collect();
    let mut done = 0;
    while done < count {
        match sendmmsg(target.fd(), &mut headers[done..], SendFlags::empty()) {
            Ok(0) => {
                tally.error((count - done) as u64, std::io::Error::other("sendmmsg sent nothing"));
                return;
            }
            Ok(n) => {
                tally.sent += n as u64;
                tally.bytes += bytes[done..done + n].iter().sum::<u64>();
                done += n;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => {
                // The first message failed: count it lost and go on with the rest.
                tally.error(1, error.into());
                done += 1;
            }
        }
    }
}

/// What a run sent.
struct Report {
    tally: Tally,
    /// From the first send to the end of the last.
    seconds: f64,
    /// How far behind the schedule the sender ever fell.
    late: Duration,
}

fn run(options: &Options) -> Result<Report, String> {
    // Sleeps end within a few µs of their deadline instead of the default 50 µs slack.
    if let Err(error) = rustix::thread::set_current_timer_slack(NonZeroU64::new(1)) {
        eprintln!("error={error} the timer slack stays the default, pacing is coarser");
    }
    let target = Target::open(&options.target).map_err(|e| format!("{}: {e}", options.target))?;
    let datagrams = render_all(options.contexts, &options.kind, options.tagged);
    let mut tally = Tally::default();
    let mut next = 0usize;
    let mut late = Duration::ZERO;
    let start = Instant::now();
    let end = start + options.duration;
    let total = if options.rate == 0 {
        u64::MAX
    } else {
        (options.rate as f64 * options.duration.as_secs_f64()).round() as u64
    };
    let mut scheduled: u64 = 0;
    let mut last = start;
    while scheduled < total {
        let now = Instant::now();
        if options.rate == 0 && now >= end {
            break;
        }
        // How many datagrams should be out by now.
        let due = if options.rate == 0 {
            u64::MAX
        } else {
            ((now - start).as_secs_f64() * options.rate as f64) as u64
        }
        .min(total);
        if due > scheduled {
            let behind = due - scheduled;
            if options.rate != 0 && behind > options.burst as u64 {
                late = late.max(Duration::from_secs_f64(
                    (behind - options.burst as u64) as f64 / options.rate as f64,
                ));
            }
            let count = behind.min(options.burst as u64) as usize;
            send_burst(&target, &datagrams, &mut next, count, options.plain_send, &mut tally);
            scheduled += count as u64;
            last = Instant::now();
            continue;
        }
        // Ahead of schedule: sleep until the next burst is due (the timer slack is 1 ns, so
        // the sleep is about as long as asked; no spinning, the CPU is the server's).
        let next_due =
            start + Duration::from_secs_f64((scheduled + options.burst as u64) as f64 / options.rate as f64);
        std::thread::sleep(next_due.saturating_duration_since(now));
    }
    Ok(Report { tally, seconds: (last - start).as_secs_f64().max(1e-9), late })
}

fn print(report: &Report) {
    let tally = &report.tally;
    println!(
        "sent={} bytes={} seconds={:.3} rate={:.0} errors={} late_ms={:.1}",
        tally.sent,
        tally.bytes,
        report.seconds,
        tally.sent as f64 / report.seconds,
        tally.errors,
        report.late.as_secs_f64() * 1000.0
    );
    if let Some(error) = &tally.first_error {
        eprintln!("errors={} first_error={error:?} some datagrams were not sent", tally.errors);
    }
}

fn main() -> ExitCode {
    match parse_options().and_then(|options| run(&options)) {
        Ok(report) => {
            print(&report);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(target: String, rate: u64, burst: usize, plain_send: bool) -> Options {
        Options {
            target,
            rate,
            duration: Duration::from_millis(100),
            contexts: 7,
            tagged: true,
            kind: "c".to_owned(),
            burst,
            plain_send,
        }
    }

    #[test]
    fn datagrams_are_rendered_per_context() {
        let plain = render_all(3, "c", false);
        assert_eq!(plain, [&b"bench.c0:1|c"[..], b"bench.c1:1|c", b"bench.c2:1|c"]);
        let tagged = render_all(2, "ms", true);
        assert_eq!(tagged[1], b"bench.c1:1|ms|#env:bench,ctx:1");
        assert_eq!(render_all(2, "s", false)[1], b"bench.c1:1|s");
    }

    /// Reads `count` datagrams on a thread (so that neither a receive buffer overflows nor a
    /// Unix sender blocks), giving up after 10 s without one.
    fn receive(socket: Target, count: usize) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
        std::thread::spawn(move || {
            let mut got = Vec::with_capacity(count);
            let mut buf = [0u8; 256];
            for _ in 0..count {
                let n = match &socket {
                    Target::Udp(s) => {
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        s.recv(&mut buf)
                    }
                    Target::Unix(s) => {
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        s.recv(&mut buf)
                    }
                };
                match n {
                    Ok(n) => got.push(buf[..n].to_vec()),
                    Err(_) => break,
                }
            }
            got
        })
    }

    /// Every datagram the generator counts as sent arrives, in round-robin order, through
    /// sendmmsg and through plain sends, over UDP and a Unix datagram socket.
    #[test]
    fn sends_exactly_what_it_counts_in_round_robin() {
        let dir = std::env::temp_dir().join(format!("dogstatsd-blast-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let expected: Vec<Vec<u8>> = render_all(7, "c", true);
        for (case, plain_send) in [("udp", false), ("udp", true), ("unix", false)] {
            let (receiver, target) = if case == "udp" {
                let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                let target = udp.local_addr().unwrap().to_string();
                (Target::Udp(udp), target)
            } else {
                let path = dir.join("sock");
                let _ = std::fs::remove_file(&path);
                (Target::Unix(UnixDatagram::bind(&path).unwrap()), path.display().to_string())
            };
            // 5,000/s for 0.1 s: 500 datagrams in bursts of 16.
            let reader = receive(receiver, 500);
            let mut options = options(target.clone(), 5_000, 16, plain_send);
            options.duration = Duration::from_millis(100);
            let report = run(&options).unwrap();
            let got = reader.join().unwrap();
            assert_eq!((report.tally.sent, report.tally.errors, got.len()), (500, 0, 500), "{target}");
            for (i, datagram) in got.iter().enumerate() {
                assert_eq!(datagram, &expected[i % 7], "{target} datagram {i}");
            }
            let sent_bytes: u64 = (0..500).map(|i| expected[i % 7].len() as u64).sum();
            assert_eq!(report.tally.bytes, sent_bytes);
            // The pacer never runs ahead of the schedule: the 500th datagram is due at 0.1 s.
            assert!(report.seconds >= 0.0999, "{target}: {} s", report.seconds);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
