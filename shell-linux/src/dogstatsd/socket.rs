//! DogStatsD sockets: UDP and Unix datagram. TEMPORARY std implementation (one datagram per
//! call, no kernel-drop counter) with the final API; the batched one replaces it.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A UDP address.
    Udp(SocketAddr),
    /// A Unix datagram socket file, created with `mode`.
    Unix {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
}

/// How to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// Largest datagram.
    pub max_datagram: usize,
    /// Receive buffer asked for (0: the kernel's default).
    pub recv_buffer: usize,
    /// Datagrams per read.
    pub batch: usize,
}

/// Why a socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Bind failed.
    #[error("{endpoint}: cannot bind: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// A read failed.
    #[error("{endpoint}: cannot read: {source}")]
    Recv {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Cumulative counters of a socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Datagrams read.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Dropped by the kernel (receive queue full).
    pub kernel_drops: u64,
    /// Longer than the largest datagram: dropped.
    pub truncated: u64,
}

enum Sock {
    Udp(UdpSocket),
    Unix(UnixDatagram, PathBuf),
}

/// A bound socket.
pub struct Receiver {
    sock: Sock,
    buf: Vec<u8>,
    stats: SocketStats,
    describe: String,
}

impl Receiver {
    /// Binds.
    pub fn bind(endpoint: &Endpoint, options: &SocketOptions) -> Result<Receiver, SocketError> {
        let (sock, describe) = match endpoint {
            Endpoint::Udp(addr) => {
                let describe = format!("udp {addr}");
                let s = UdpSocket::bind(addr)
                    .map_err(|source| SocketError::Bind { endpoint: describe.clone(), source })?;
                (Sock::Udp(s), describe)
            }
            Endpoint::Unix { path, .. } => {
                let describe = format!("uds {}", path.display());
                let _ = std::fs::remove_file(path);
                let s = UnixDatagram::bind(path)
                    .map_err(|source| SocketError::Bind { endpoint: describe.clone(), source })?;
                (Sock::Unix(s, path.clone()), describe)
            }
        };
        Ok(Receiver { sock, buf: vec![0; options.max_datagram + 1], stats: SocketStats::default(), describe })
    }

    /// For logs.
    pub fn describe(&self) -> String {
        self.describe.clone()
    }

    /// The UDP port bound.
    pub fn local_port(&self) -> Option<u16> {
        match &self.sock {
            Sock::Udp(s) => s.local_addr().ok().map(|a| a.port()),
            Sock::Unix(..) => None,
        }
    }

    /// The receive buffer obtained.
    pub fn recv_buffer(&self) -> usize {
        0
    }

    /// Reads what comes within `timeout`.
    pub fn recv_batch(
        &mut self,
        timeout: Duration,
        mut each: impl FnMut(&[u8]),
    ) -> Result<usize, SocketError> {
        let max = self.buf.len() - 1;
        let got = match &self.sock {
            Sock::Udp(s) => {
                let _ = s.set_read_timeout(Some(timeout));
                s.recv(&mut self.buf)
            }
            Sock::Unix(s, _) => {
                let _ = s.set_read_timeout(Some(timeout));
                s.recv(&mut self.buf)
            }
        };
        match got {
            Ok(n) if n > max => {
                self.stats.truncated += 1;
                Ok(0)
            }
            Ok(n) => {
                self.stats.datagrams += 1;
                self.stats.bytes += n as u64;
                each(&self.buf[..n]);
                Ok(1)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            Err(source) => Err(SocketError::Recv { endpoint: self.describe.clone(), source }),
        }
    }

    /// Counters.
    pub fn stats(&self) -> SocketStats {
        self.stats
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Sock::Unix(_, path) = &self.sock {
            let _ = std::fs::remove_file(path);
        }
    }
}
