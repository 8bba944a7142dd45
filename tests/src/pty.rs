//! A pseudo-terminal pair for tests of the serial link's tty path: the test holds the master
//! side (what a microcontroller's UART would be), the code under test opens the slave path
//! (`/dev/pts/N`) as it would open `/dev/ttyUSB0`, and sets its termios.
//!
//! Everything a byte goes through on a real tty's line discipline (echo, canonical mode, CR/LF
//! translation, XON/XOFF) applies to the slave's termios, so bytes crossing a pty unaltered
//! prove the code's raw mode.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};

/// The master side of a pty and the path of its slave.
#[derive(Debug)]
pub struct PtyPair {
    /// The master side: what is written here arrives on the slave, and back.
    pub master: File,
    /// The slave's path, `/dev/pts/N`.
    pub path: PathBuf,
}

impl PtyPair {
    /// Opens a new pty (`posix_openpt`, `grantpt`, `unlockpt`, `ptsname`).
    pub fn open() -> PtyPair {
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("posix_openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let path = PathBuf::from(name.into_string().expect("a UTF-8 pts path"));
        PtyPair { master: File::from(master), path }
    }

    /// Writes `bytes` to the master side (they arrive on the slave's input).
    pub fn write(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to the pty master");
    }

    /// Reads from the master side until `n` bytes came (what the slave wrote) or `timeout`
    /// passed; returns what came (fewer than `n` on timeout, so a test can assert on it).
    pub fn read_for(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        let mut buf = [0u8; 4096];
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let spec = Timespec::try_from(left).expect("a timeout that fits a timespec");
            let mut fds = [PollFd::new(&self.master, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&spec)) {
                Ok(0) => break,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => panic!("poll on the pty master: {e}"),
            }
            let want = (n - out.len()).min(buf.len());
            match self.master.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(k) => out.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EIO: no slave holds the pty open (yet, or any more).
                Err(_) => break,
            }
        }
        out
    }

    /// Whether the master has bytes to read right now (or within `timeout`).
    pub fn readable_within(&self, timeout: Duration) -> bool {
        let spec = Timespec::try_from(timeout).expect("a timeout that fits a timespec");
        let mut fds = [PollFd::new(&self.master, PollFlags::IN)];
        matches!(rustix::event::poll(&mut fds, Some(&spec)), Ok(n) if n > 0)
            && fds[0].revents().contains(PollFlags::IN)
    }
}
