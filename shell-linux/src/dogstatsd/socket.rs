//! DogStatsD sockets: UDP and Unix datagram, read in batches (`recvmmsg(2)`), with the kernel's
//! receive-queue drops counted (`SO_RXQ_OVFL`).
//!
//! A [`Receiver`] is one bound socket. [`Receiver::recv_batch`] waits (`poll(2)`) at most a
//! timeout, then reads up to [`SocketOptions::batch`] datagrams in one system call into buffers
//! allocated once at bind time: nothing is allocated per datagram or per batch.
//!
//! What is counted ([`SocketStats`], cumulative):
//! - `datagrams`, `bytes`: the datagrams handed to the caller and their bytes.
//! - `truncated`: datagrams longer than [`SocketOptions::max_datagram`]. Each buffer holds one
//!   byte more than that, so a longer datagram is seen (`MSG_TRUNC`, or a full buffer) and never
//!   handed over cut.
//! - `kernel_drops` (UDP only): datagrams the kernel dropped because the socket's receive queue
//!   was full. The kernel keeps one cumulative drop counter per socket (a `u32`, which wraps:
//!   handled), read two ways: with `SO_RXQ_OVFL` the kernel stamps each queued datagram with the
//!   counter's value when it was queued (so drops show with the next datagram queued after them),
//!   and [`Receiver::stats`] reads its current value (`SO_MEMINFO`), so drops at the end of a
//!   burst are counted even if nothing follows. Unix datagram sockets do not drop: a full queue
//!   (`net.unix.max_dgram_qlen`) blocks the sender or fails its send with `EAGAIN`, which the
//!   sender sees; `kernel_drops` stays 0 there.
//!
//! The only `unsafe` of the agent's sockets is in the private module `sys`: `recvmmsg(2)` with its control
//! messages, and the `SO_RXQ_OVFL` and `SO_MEMINFO` options, which neither std nor rustix offer. The `nix` crate
//! has safe wrappers, but its `recvmmsg` does not restore `msg_controllen` between calls on
//! reused headers (nix-rust/nix#2813, open): after the first datagram without a drop counter,
//! control messages stop arriving, so drops would silently stop being counted.

use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

use crate::limits::{DOGSTATSD_BATCH, DOGSTATSD_MAX_BATCH, MAX_DATAGRAM_BYTES};

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A UDP address (`127.0.0.1:8125`; port 0 picks a free port, see [`Receiver::local_port`]).
    Udp(SocketAddr),
    /// A Unix datagram socket file, created at `path` with the file mode `mode` (`0o622`).
    Unix {
        /// The socket file's path; a stale socket file there is replaced.
        path: PathBuf,
        /// The socket file's mode, set after binding.
        mode: u32,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Udp(address) => write!(f, "udp {address}"),
            Endpoint::Unix { path, .. } => write!(f, "uds {}", path.display()),
        }
    }
}

/// How a [`Receiver`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// Largest datagram in bytes (1 to [`MAX_DATAGRAM_BYTES`]); longer ones are counted as
    /// `truncated` and not handed over.
    pub max_datagram: usize,
    /// Receive buffer to request (`SO_RCVBUF`), in bytes; 0 keeps the kernel's default.
    pub recv_buffer: usize,
    /// Datagrams read per `recvmmsg` call (1 to [`DOGSTATSD_MAX_BATCH`]).
    pub batch: usize,
}

impl Default for SocketOptions {
    /// The contract's defaults: 8 KiB datagrams, an 8 MiB receive buffer, 64 per call.
    fn default() -> Self {
        SocketOptions { max_datagram: 8192, recv_buffer: 8 * 1024 * 1024, batch: DOGSTATSD_BATCH }
    }
}

/// What went wrong with a socket; each names its endpoint (`udp 127.0.0.1:8125`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// The options cannot work (a datagram size of 0 or over 64 KiB, a batch of 0).
    #[error("{endpoint}: invalid options: {reason}")]
    InvalidOptions {
        /// The endpoint.
        endpoint: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The socket could not be bound (port or path taken, no permission, no directory).
    #[error("{endpoint}: cannot bind: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// The system's error.
        source: io::Error,
    },
    /// Something that is not a socket is at the Unix socket's path: it is left alone.
    #[error("{endpoint}: the path exists and is not a socket, refusing to replace it")]
    NotASocket {
        /// The endpoint.
        endpoint: String,
    },
    /// Another process listens on the Unix socket's path.
    #[error("{endpoint}: another process listens on this socket")]
    InUse {
        /// The endpoint.
        endpoint: String,
    },
    /// The stale socket file could not be examined or removed.
    #[error("{endpoint}: cannot replace the stale socket file: {source}")]
    Stale {
        /// The endpoint.
        endpoint: String,
        /// The system's error.
        source: io::Error,
    },
    /// The socket file's mode could not be set.
    #[error("{endpoint}: cannot set the socket file's mode to {mode:04o}: {source}")]
    Mode {
        /// The endpoint.
        endpoint: String,
        /// The mode asked for.
        mode: u32,
        /// The system's error.
        source: io::Error,
    },
    /// A socket option could not be set or read.
    #[error("{endpoint}: cannot set {option}: {source}")]
    Option {
        /// The endpoint.
        endpoint: String,
        /// The option (`SO_RCVBUF`).
        option: &'static str,
        /// The system's error.
        source: io::Error,
    },
    /// Waiting for or reading datagrams failed.
    #[error("{endpoint}: cannot receive: {source}")]
    Receive {
        /// The endpoint.
        endpoint: String,
        /// The system's error.
        source: io::Error,
    },
}

/// A receiver's cumulative counts since it was bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Datagrams handed to the caller.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Datagrams the kernel dropped, its receive queue full (UDP; 0 on Unix sockets).
    pub kernel_drops: u64,
    /// Datagrams longer than `max_datagram`, not handed over.
    pub truncated: u64,
}

/// The kernel's per-socket drop counter is a `u32` that wraps; this turns its successive values
/// into a running total.
#[derive(Debug, Clone, Copy, Default)]
struct DropCounter {
    last: u32,
    total: u64,
}

impl DropCounter {
    /// Takes the counter's value stamped on one datagram. Values arrive in queue order, so the
    /// counter only moves forward; a step of 2^31 or more would be a step back, and is ignored.
    fn observe(&mut self, value: u32) {
        let step = value.wrapping_sub(self.last);
        if step < 1 << 31 {
            self.total += u64::from(step);
            self.last = value;
        }
    }
}

enum Socket {
    Udp(UdpSocket),
    Unix {
        socket: UnixDatagram,
        path: PathBuf,
        /// The socket file's device and inode: only this file is removed on drop.
        file: (u64, u64),
    },
}

impl Socket {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Udp(socket) => socket.as_fd(),
            Socket::Unix { socket, .. } => socket.as_fd(),
        }
    }
}

/// One bound DogStatsD socket and its preallocated batch buffers.
pub struct Receiver {
    socket: Socket,
    description: String,
    max_datagram: usize,
    /// `max_datagram + 1`: a buffer filled to the brim held a longer datagram.
    slot_bytes: usize,
    /// `batch` slots of `slot_bytes`.
    buffers: Vec<u8>,
    /// `batch` slots of [`sys::CONTROL_WORDS`] (u64: the alignment `cmsghdr` needs).
    control: Vec<u64>,
    /// What each slot received in the last call.
    received: Vec<sys::Received>,
    recv_buffer: usize,
    /// All but `kernel_drops`, which comes from `drops`.
    stats: SocketStats,
    /// A `Cell`: [`Receiver::stats`] (`&self`) folds in the counter's current value.
    drops: Cell<DropCounter>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("endpoint", &self.description)
            .field("batch", &self.received.len())
            .field("max_datagram", &self.max_datagram)
            .field("recv_buffer", &self.recv_buffer)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Receiver {
    /// Binds `endpoint`: sets the receive buffer (`SO_RCVBUFFORCE`, which needs
    /// `CAP_NET_ADMIN`, else `SO_RCVBUF`, capped by `net.core.rmem_max`), and on UDP turns on
    /// `SO_RXQ_OVFL`. A Unix socket replaces a stale socket file at its path (never anything
    /// else, nor a socket another process listens on), gets its mode, and is removed on drop.
    pub fn bind(endpoint: &Endpoint, options: &SocketOptions) -> Result<Receiver, SocketError> {
        let name = endpoint.to_string();
        if options.max_datagram == 0 {
            return Err(SocketError::InvalidOptions { endpoint: name, reason: "max_datagram is 0" });
        }
        if options.max_datagram > MAX_DATAGRAM_BYTES {
            return Err(SocketError::InvalidOptions { endpoint: name, reason: "max_datagram is over 65536" });
        }
        if options.batch == 0 {
            return Err(SocketError::InvalidOptions { endpoint: name, reason: "batch is 0" });
        }
        let socket = match endpoint {
            Endpoint::Udp(address) => {
                let socket = UdpSocket::bind(address)
                    .map_err(|source| SocketError::Bind { endpoint: name.clone(), source })?;
                // Not fatal: stats() still reads the drop counter (SO_MEMINFO). Seen under
                // qemu-user, which does not emulate the option.
                if let Err(error) = sys::enable_rxq_ovfl(socket.as_fd()) {
                    log::warn!(
                        "endpoint={name} error={error}: cannot turn SO_RXQ_OVFL on, kernel drops are read at each report only"
                    );
                }
                Socket::Udp(socket)
            }
            Endpoint::Unix { path, mode } => bind_unix(&name, path, *mode)?,
        };
        let fd = socket.fd();
        if options.recv_buffer > 0 {
            let forced = rustix::net::sockopt::set_socket_recv_buffer_size_force(fd, options.recv_buffer);
            if forced.is_err() {
                rustix::net::sockopt::set_socket_recv_buffer_size(fd, options.recv_buffer).map_err(|e| {
                    SocketError::Option { endpoint: name.clone(), option: "SO_RCVBUF", source: e.into() }
                })?;
            }
        }
        let recv_buffer = rustix::net::sockopt::socket_recv_buffer_size(fd).map_err(|e| {
            SocketError::Option { endpoint: name.clone(), option: "SO_RCVBUF", source: e.into() }
        })?;
        // The description names the bound port (port 0 picked one).
        let description = match &socket {
            Socket::Udp(udp) => udp.local_addr().map_or(name, |address| Endpoint::Udp(address).to_string()),
            Socket::Unix { .. } => name,
        };
        let batch = options.batch.min(DOGSTATSD_MAX_BATCH);
        let slot_bytes = options.max_datagram + 1;
        Ok(Receiver {
            socket,
            description,
            max_datagram: options.max_datagram,
            slot_bytes,
            buffers: vec![0; batch * slot_bytes],
            control: vec![0; batch * sys::CONTROL_WORDS],
            received: vec![sys::Received::default(); batch],
            recv_buffer,
            stats: SocketStats::default(),
            drops: Cell::new(DropCounter::default()),
        })
    }

    /// `udp 127.0.0.1:8125` (the bound port) or `uds /run/chouette/dsd.socket`.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// The bound UDP port (`None` for a Unix socket).
    pub fn local_port(&self) -> Option<u16> {
        match &self.socket {
            Socket::Udp(socket) => socket.local_addr().ok().map(|address| address.port()),
            Socket::Unix { .. } => None,
        }
    }

    /// The receive buffer in effect, as the kernel reports it: twice what was granted (the
    /// kernel doubles the request to account for its bookkeeping), so with the default
    /// `net.core.rmem_max` of 208 KiB and no `CAP_NET_ADMIN`, an 8 MiB request reads back 416 KiB.
    pub fn recv_buffer(&self) -> usize {
        self.recv_buffer
    }

    /// Waits at most `timeout` for datagrams, then reads up to `batch` of them in one call
    /// (`recvmmsg`, `MSG_DONTWAIT`) and calls `each` with every datagram's bytes, in order.
    /// When datagrams are already queued it reads at once, without waiting (`poll`).
    /// Returns how many datagrams it read, truncated ones included (0 on timeout). An interrupted
    /// wait (`EINTR`) or nothing to read after all (`EAGAIN`) returns 0, not an error.
    pub fn recv_batch(
        &mut self,
        timeout: Duration,
        mut each: impl FnMut(&[u8]),
    ) -> Result<usize, SocketError> {
        let receive_error =
            |source: io::Error| SocketError::Receive { endpoint: self.description.clone(), source };
        let would_block = |error: &io::Error| {
            matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
        };
        let fd = self.socket.fd();
        // Read first: under load datagrams are waiting and one system call does (no poll).
        let mut read =
            sys::recv_many(fd, &mut self.buffers, self.slot_bytes, &mut self.control, &mut self.received);
        if read.as_ref().is_err_and(would_block) {
            match wait_readable(fd, timeout) {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(error) => return Err(receive_error(error)),
            }
            read =
                sys::recv_many(fd, &mut self.buffers, self.slot_bytes, &mut self.control, &mut self.received);
        }
        let count = match read {
            Ok(count) => count,
            Err(error) if would_block(&error) => return Ok(0),
            Err(error) => return Err(receive_error(error)),
        };
        let mut drops = self.drops.get();
        for (slot, received) in self.received.iter().take(count).enumerate() {
            if let Some(value) = received.drop_counter {
                drops.observe(value);
            }
            if received.truncated || received.len > self.max_datagram {
                self.stats.truncated += 1;
                continue;
            }
            let start = slot * self.slot_bytes;
            let Some(bytes) = self.buffers.get(start..start + received.len) else {
                // recv_many never reports more bytes than a slot holds; counted, not handed over.
                self.stats.truncated += 1;
                continue;
            };
            self.stats.datagrams += 1;
            self.stats.bytes += bytes.len() as u64;
            each(bytes);
        }
        self.drops.set(drops);
        Ok(count)
    }

    /// Cumulative counts since the socket was bound. Reads the kernel's drop counter (one
    /// `getsockopt`): call it once per report, not per datagram.
    pub fn stats(&self) -> SocketStats {
        let mut drops = self.drops.get();
        if let Some(value) = sys::drop_counter(self.socket.fd()) {
            drops.observe(value);
            self.drops.set(drops);
        }
        SocketStats { kernel_drops: drops.total, ..self.stats }
    }
}

impl Drop for Receiver {
    /// Removes the Unix socket's file, if it is still this socket's (not one bound since by
    /// another process at the same path).
    fn drop(&mut self) {
        if let Socket::Unix { path, file, .. } = &self.socket {
            let ours = std::fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == *file);
            if ours {
                if let Err(error) = std::fs::remove_file(path) {
                    log::warn!(
                        "path={} error={error}: cannot remove the DogStatsD socket file",
                        path.display()
                    );
                }
            }
        }
    }
}

fn bind_unix(name: &str, path: &Path, mode: u32) -> Result<Socket, SocketError> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => {
            // A datagram socket someone still reads accepts a connect; a stale one refuses it.
            if UnixDatagram::unbound().and_then(|probe| probe.connect(path)).is_ok() {
                return Err(SocketError::InUse { endpoint: name.to_owned() });
            }
            std::fs::remove_file(path)
                .map_err(|source| SocketError::Stale { endpoint: name.to_owned(), source })?;
        }
        Ok(_) => return Err(SocketError::NotASocket { endpoint: name.to_owned() }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(SocketError::Stale { endpoint: name.to_owned(), source }),
    }
    let socket =
        UnixDatagram::bind(path).map_err(|source| SocketError::Bind { endpoint: name.to_owned(), source })?;
    let mode_error = |source| SocketError::Mode { endpoint: name.to_owned(), mode, source };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(mode_error)?;
    let metadata = std::fs::symlink_metadata(path).map_err(mode_error)?;
    Ok(Socket::Unix { socket, path: path.to_owned(), file: (metadata.dev(), metadata.ino()) })
}

/// Waits until `fd` is readable (or in error: the read that follows reports it); `false` on
/// timeout or when interrupted by a signal.
fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let spec = Timespec::try_from(timeout).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    match rustix::event::poll(&mut fds, Some(&spec)) {
        Ok(0) | Err(rustix::io::Errno::INTR) => Ok(false),
        Ok(_) => Ok(true),
        Err(error) => Err(error.into()),
    }
}

/// The two system calls std and rustix do not offer, and the agent's only `unsafe` for sockets.
#[allow(unsafe_code)]
mod sys {
    use std::io;
    use std::mem::MaybeUninit;
    use std::os::fd::{AsRawFd, BorrowedFd};

    use super::DOGSTATSD_MAX_BATCH;

    /// Control bytes per datagram, in u64 words: one `cmsghdr` (16 bytes on 64-bit, 12 on
    /// 32-bit) and its u32, padded: `CMSG_SPACE(4)` is 24 or 16. Twice that, in case the
    /// kernel adds another message: a short buffer would only lose it (`MSG_CTRUNC`).
    pub(super) const CONTROL_WORDS: usize = 6;

    /// What one datagram's header said.
    #[derive(Debug, Clone, Copy, Default)]
    pub(super) struct Received {
        /// Bytes copied into the slot (at most the slot's size).
        pub len: usize,
        /// `MSG_TRUNC`: the datagram was longer than the slot.
        pub truncated: bool,
        /// `SO_RXQ_OVFL`'s counter: the socket's drops when this datagram was queued (the
        /// kernel sends it only once the counter is not 0).
        pub drop_counter: Option<u32>,
    }

    /// `setsockopt(SOL_SOCKET, SO_RXQ_OVFL, 1)`.
    pub(super) fn enable_rxq_ovfl(fd: BorrowedFd<'_>) -> io::Result<()> {
        let one: libc::c_int = 1;
        // SAFETY: `fd` is an open socket for the call's duration (borrowed); the option value
        // points to a live c_int and its exact size is passed.
        let result = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RXQ_OVFL,
                std::ptr::from_ref(&one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The socket's drop counter now: `getsockopt(SOL_SOCKET, SO_MEMINFO)`, entry
    /// `SK_MEMINFO_DROPS` (Linux 3.9). `None` if the call fails, or on architectures where the
    /// option's number is not the generic 55 (the libc crate does not define it).
    pub(super) fn drop_counter(fd: BorrowedFd<'_>) -> Option<u32> {
        #[cfg(any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "aarch64",
            target_arch = "arm",
            target_arch = "riscv64"
        ))]
        {
            // include/uapi/asm-generic/socket.h, used by these architectures.
            const SO_MEMINFO: libc::c_int = 55;
            // SK_MEMINFO_VARS is 9 since Linux 4.x; an older kernel fills fewer (checked below).
            let mut info = [0u32; 9];
            let mut len = size_of_val(&info) as libc::socklen_t;
            // SAFETY: `fd` is an open socket for the call's duration (borrowed); the value
            // points to a live, writable u32 array and `len` holds its exact size in bytes; the
            // kernel writes at most `len` bytes and the count it wrote into `len`.
            let result = unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    SO_MEMINFO,
                    info.as_mut_ptr().cast(),
                    &raw mut len,
                )
            };
            let drops = libc::SK_MEMINFO_DROPS as usize;
            if result == 0 && len as usize > drops * size_of::<u32>() {
                return info.get(drops).copied();
            }
            None
        }
        #[cfg(not(any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "aarch64",
            target_arch = "arm",
            target_arch = "riscv64"
        )))]
        {
            let _ = fd;
            None
        }
    }

    /// One `recvmmsg(fd, .., MSG_DONTWAIT)` into `buffers` (slots of `slot_bytes`) with each
    /// slot's control messages in `control` (slots of [`CONTROL_WORDS`]); fills `out` for the
    /// datagrams read and returns their number (`WouldBlock` when there were none).
    pub(super) fn recv_many(
        fd: BorrowedFd<'_>,
        buffers: &mut [u8],
        slot_bytes: usize,
        control: &mut [u64],
        out: &mut [Received],
    ) -> io::Result<usize> {
        let slots = out
            .len()
            .min(DOGSTATSD_MAX_BATCH)
            .min(buffers.len().checked_div(slot_bytes).unwrap_or(0))
            .min(control.len() / CONTROL_WORDS);
        if slots == 0 {
            return Ok(0);
        }
        let mut iovecs = [const { MaybeUninit::<libc::iovec>::uninit() }; DOGSTATSD_MAX_BATCH];
        let mut headers = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; DOGSTATSD_MAX_BATCH];
        let buffer_slots = buffers.chunks_exact_mut(slot_bytes);
        let control_slots = control.chunks_exact_mut(CONTROL_WORDS);
        for (slot, (buffer, control)) in buffer_slots.zip(control_slots).take(slots).enumerate() {
            let iovec = iovecs[slot]
                .write(libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() });
            // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths); zeroing also
            // clears the private padding fields some libcs (musl) have.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_iov = std::ptr::from_mut(iovec);
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = control.as_mut_ptr().cast();
            // Each call resets it: the kernel overwrites it with the control bytes it wrote.
            header.msg_hdr.msg_controllen = size_of_val(control) as _;
            headers[slot].write(header);
        }
        // SAFETY: the first `slots` headers are initialised. Each points to its own iovec (on
        // this stack frame) over a distinct slot of `buffers`, and to a distinct slot of
        // `control` (u64s: aligned for cmsghdr), all exclusively borrowed for this call, with
        // their exact lengths; msg_name is null (no address wanted). The kernel writes at most
        // those lengths, and into the headers' msg_len, msg_flags, msg_controllen. No timeout
        // pointer. `fd` is open for the call (borrowed).
        let count = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                headers.as_mut_ptr().cast::<libc::mmsghdr>(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        let Ok(count) = usize::try_from(count) else {
            return Err(io::Error::last_os_error());
        };
        let count = count.min(slots);
        for (slot, result) in out.iter_mut().take(count).enumerate() {
            // SAFETY: slot < count <= slots: initialised above, and written by the kernel.
            let header = unsafe { headers[slot].assume_init_ref() };
            let mut drop_counter = None;
            // SAFETY: msg_control and msg_controllen describe this slot's control buffer as the
            // kernel left it (msg_controllen: the bytes it wrote, at most the buffer's size).
            // CMSG_FIRSTHDR/CMSG_NXTHDR stay within it and return null past its end; a cmsghdr
            // they return lies wholly inside it, aligned; its data is read unaligned, and only a
            // SO_RXQ_OVFL message with room for its u32.
            unsafe {
                let mut message = libc::CMSG_FIRSTHDR(&header.msg_hdr);
                while !message.is_null() {
                    let m = &*message;
                    let data_len = (m.cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                    if m.cmsg_level == libc::SOL_SOCKET
                        && m.cmsg_type == libc::SO_RXQ_OVFL
                        && data_len >= size_of::<u32>()
                    {
                        drop_counter = Some(libc::CMSG_DATA(message).cast::<u32>().read_unaligned());
                    }
                    message = libc::CMSG_NXTHDR(&header.msg_hdr, message);
                }
            }
            *result = Received {
                len: (header.msg_len as usize).min(slot_bytes),
                truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                drop_counter,
            };
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Instant;

    const WAIT: Duration = Duration::from_secs(10);

    fn loopback() -> Endpoint {
        Endpoint::Udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    fn udp(options: SocketOptions) -> (Receiver, UdpSocket, SocketAddr) {
        let receiver = Receiver::bind(&loopback(), &options).expect("bind");
        let port = receiver.local_port().expect("a UDP port");
        let sender = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("sender");
        (receiver, sender, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// Reads until `want` datagrams were received (truncated included) or `WAIT` passed.
    fn read(receiver: &mut Receiver, want: usize) -> (Vec<Vec<u8>>, Vec<usize>) {
        let mut got = Vec::new();
        let mut batches = Vec::new();
        let deadline = Instant::now() + WAIT;
        while batches.iter().sum::<usize>() < want && Instant::now() < deadline {
            let n = receiver.recv_batch(Duration::from_millis(100), |d| got.push(d.to_vec())).expect("recv");
            if n > 0 {
                batches.push(n);
            }
        }
        (got, batches)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chouette-sock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn udp_round_trip_exact_bytes_several_in_one_batch() {
        let (mut receiver, sender, to) = udp(SocketOptions::default());
        assert!(receiver.describe().starts_with("udp 127.0.0.1:"), "{}", receiver.describe());
        assert_ne!(receiver.describe(), "udp 127.0.0.1:0");
        let sent: Vec<&[u8]> = vec![b"a.b:1|c", b"gauge:2.5|g|#env:prod\nx:1|c", b"", b"\xff\x00binary"];
        for datagram in &sent {
            sender.send_to(datagram, to).expect("send");
        }
        let (got, batches) = read(&mut receiver, sent.len());
        assert_eq!(got, sent.iter().map(|d| d.to_vec()).collect::<Vec<_>>());
        // All were queued before the first read: one recvmmsg call took them all.
        assert_eq!(batches, vec![4]);
        let bytes = sent.iter().map(|d| d.len() as u64).sum();
        assert_eq!(receiver.stats(), SocketStats { datagrams: 4, bytes, kernel_drops: 0, truncated: 0 });
    }

    #[test]
    fn batch_size_bounds_one_call() {
        let options = SocketOptions { batch: 3, ..SocketOptions::default() };
        let (mut receiver, sender, to) = udp(options);
        for i in 0..7u8 {
            sender.send_to(&[b'0' + i], to).expect("send");
        }
        let (got, batches) = read(&mut receiver, 7);
        assert_eq!(got, (0..7u8).map(|i| vec![b'0' + i]).collect::<Vec<_>>());
        assert_eq!(batches, vec![3, 3, 1]);
    }

    #[test]
    fn timeout_returns_zero() {
        let (mut receiver, _sender, _to) = udp(SocketOptions::default());
        let start = Instant::now();
        let n =
            receiver.recv_batch(Duration::from_millis(50), |_| panic!("no datagram was sent")).expect("recv");
        assert_eq!(n, 0);
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert_eq!(receiver.stats(), SocketStats::default());
    }

    #[test]
    fn udp_longer_than_max_is_truncated_and_the_next_is_read() {
        let options = SocketOptions { max_datagram: 100, ..SocketOptions::default() };
        let (mut receiver, sender, to) = udp(options);
        sender.send_to(&[b'x'; 101], to).expect("send");
        sender.send_to(&[b'y'; 100], to).expect("send");
        sender.send_to(&[b'z'; 5000], to).expect("send");
        sender.send_to(b"ok:1|c", to).expect("send");
        let (got, _) = read(&mut receiver, 4);
        assert_eq!(got, vec![vec![b'y'; 100], b"ok:1|c".to_vec()]);
        assert_eq!(receiver.stats(), SocketStats { datagrams: 2, bytes: 106, kernel_drops: 0, truncated: 2 });
    }

    #[test]
    fn recv_buffer_is_read_back() {
        // The kernel doubles the value granted; CAP_NET_ADMIN (SO_RCVBUFFORCE) grants all of
        // it, else net.core.rmem_max caps it.
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .expect("rmem_max")
            .trim()
            .parse()
            .expect("a number");
        let forced = {
            let probe = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("probe");
            rustix::net::sockopt::set_socket_recv_buffer_size_force(&probe, 1 << 20).is_ok()
        };
        for request in [64 * 1024, 1 << 20] {
            let options = SocketOptions { recv_buffer: request, ..SocketOptions::default() };
            let receiver = Receiver::bind(&loopback(), &options).expect("bind");
            let granted = if forced { request } else { request.min(rmem_max) };
            assert_eq!(receiver.recv_buffer(), 2 * granted, "request {request}, forced {forced}");
        }
        // 0 keeps the kernel's default.
        let default: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_default")
            .expect("rmem_default")
            .trim()
            .parse()
            .expect("a number");
        let options = SocketOptions { recv_buffer: 0, ..SocketOptions::default() };
        let receiver = Receiver::bind(&loopback(), &options).expect("bind");
        assert_eq!(receiver.recv_buffer(), default);
    }

    const SENT: usize = 2000;

    /// A real overflow: a small receive queue (4 KiB asked, 8 KiB granted: about a dozen small
    /// datagrams), 2,000 datagrams sent before any read, then the queue drained. Returns how many
    /// were read. Every send on loopback that returns Ok is queued at the socket or dropped there.
    fn overflow(receiver: &mut Receiver, sender: &UdpSocket, to: SocketAddr) -> usize {
        for i in 0..SENT {
            sender.send_to(format!("drop.test:{i}|c").as_bytes(), to).expect("send");
        }
        let mut received = 0;
        loop {
            let n = receiver.recv_batch(Duration::from_millis(200), |_| {}).expect("recv");
            if n == 0 {
                break;
            }
            received += n;
        }
        assert!(received < SENT, "the queue held all {SENT}: no overflow");
        assert_eq!(receiver.stats.datagrams, received as u64);
        received
    }

    /// `stats` reads the kernel's counter: exact as soon as the queue is drained.
    #[test]
    fn kernel_drops_are_counted_exactly() {
        let options = SocketOptions { recv_buffer: 4096, ..SocketOptions::default() };
        let (mut receiver, sender, to) = udp(options);
        let received = overflow(&mut receiver, &sender, to);
        let stats = receiver.stats();
        assert_eq!(stats.kernel_drops, (SENT - received) as u64, "{stats:?}");
        assert_eq!(stats.datagrams + stats.kernel_drops, SENT as u64, "{stats:?}");
        assert_eq!(stats.truncated, 0);
    }

    /// `SO_RXQ_OVFL` alone (no `stats` call until the end): the drops are stamped on the next
    /// datagram queued after them, so once the queue is read, one more datagram brings the count.
    #[test]
    fn kernel_drops_are_stamped_on_the_next_datagram() {
        let options = SocketOptions { recv_buffer: 4096, ..SocketOptions::default() };
        let (mut receiver, sender, to) = udp(options);
        let received = overflow(&mut receiver, &sender, to);
        sender.send_to(b"after:1|c", to).expect("send");
        let (got, _) = read(&mut receiver, 1);
        assert_eq!(got, vec![b"after:1|c".to_vec()]);
        assert_eq!(receiver.drops.get().total, (SENT - received) as u64);
        let stats = receiver.stats();
        assert_eq!(stats.datagrams + stats.kernel_drops, SENT as u64 + 1, "{stats:?}");
    }

    #[test]
    fn a_receiver_moves_to_its_own_thread_and_allocates_once() {
        fn is_send<T: Send>(_: &T) {}
        let options = SocketOptions { max_datagram: 8192, batch: 64, ..SocketOptions::default() };
        let (mut receiver, sender, to) = udp(options);
        is_send(&receiver);
        // The buffers: batch slots of max_datagram + 1 bytes (513 KiB at the defaults), and
        // 48 control bytes per slot; never reallocated.
        assert_eq!(receiver.buffers.len(), 64 * 8193);
        assert_eq!(size_of_val(receiver.control.as_slice()), 64 * 48);
        let (buffers, control) = (receiver.buffers.as_ptr(), receiver.control.as_ptr());
        let reader = std::thread::spawn(move || {
            let got = read(&mut receiver, 100).0.len();
            (got, receiver.buffers.as_ptr() as usize, receiver.control.as_ptr() as usize)
        });
        for i in 0..100 {
            sender.send_to(format!("t:{i}|c").as_bytes(), to).expect("send");
        }
        let (got, buffers_after, control_after) = reader.join().expect("reader");
        assert_eq!(got, 100);
        assert_eq!((buffers_after, control_after), (buffers as usize, control as usize));
    }

    #[test]
    fn the_drop_counter_wraps() {
        let mut counter = DropCounter::default();
        counter.observe(5);
        counter.observe(5);
        assert_eq!(counter.total, 5);
        // The counter climbs in steps of less than 2^31 up to just below the wrap...
        for value in [1 << 30, 2 << 30, 3 << 30, u32::MAX - 1] {
            counter.observe(value);
        }
        assert_eq!(counter.total, u64::from(u32::MAX) - 1);
        counter.observe(3); // ...and wraps: MAX-1 -> MAX -> 0 -> 1 -> 2 -> 3.
        assert_eq!(counter.total, u64::from(u32::MAX) + 4);
        counter.observe(2); // A step back (2^32 - 1 forward) is ignored.
        assert_eq!(counter.total, u64::from(u32::MAX) + 4);
        counter.observe(10);
        assert_eq!(counter.total, u64::from(u32::MAX) + 11);
    }

    #[test]
    fn unix_round_trip_mode_and_removal() {
        let dir = temp_dir("uds");
        let path = dir.join("dsd.socket");
        let endpoint = Endpoint::Unix { path: path.clone(), mode: 0o622 };
        let options = SocketOptions { max_datagram: 64, batch: 8, ..SocketOptions::default() };
        let mut receiver = Receiver::bind(&endpoint, &options).expect("bind");
        assert_eq!(receiver.describe(), format!("uds {}", path.display()));
        assert_eq!(receiver.local_port(), None);
        let metadata = std::fs::symlink_metadata(&path).expect("socket file");
        assert!(metadata.file_type().is_socket());
        assert_eq!(metadata.permissions().mode() & 0o7777, 0o622);

        let sender = UnixDatagram::unbound().expect("sender");
        sender.send_to(b"uds.a:1|c", &path).expect("send");
        sender.send_to(&[b'l'; 65], &path).expect("send");
        sender.send_to(&[b'n'; 200], &path).expect("send");
        sender.send_to(&[b'm'; 64], &path).expect("send");
        sender.send_to(b"uds.b:2|g|#k:v", &path).expect("send");
        let (got, batches) = read(&mut receiver, 5);
        assert_eq!(got, vec![b"uds.a:1|c".to_vec(), vec![b'm'; 64], b"uds.b:2|g|#k:v".to_vec()]);
        assert_eq!(batches, vec![5]);
        assert_eq!(
            receiver.stats(),
            SocketStats { datagrams: 3, bytes: 9 + 64 + 14, kernel_drops: 0, truncated: 2 }
        );

        drop(receiver);
        assert!(!path.exists(), "the socket file is removed on drop");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn unix_replaces_a_stale_socket_only() {
        let dir = temp_dir("stale");
        let path = dir.join("dsd.socket");
        let endpoint = Endpoint::Unix { path: path.clone(), mode: 0o600 };
        let options = SocketOptions::default();

        // A stale socket file (its socket closed) is replaced.
        drop(UnixDatagram::bind(&path).expect("stale socket"));
        assert!(path.exists());
        let mut receiver = Receiver::bind(&endpoint, &options).expect("replaces the stale socket");
        UnixDatagram::unbound().expect("sender").send_to(b"x:1|c", &path).expect("send");
        assert_eq!(read(&mut receiver, 1).0, vec![b"x:1|c".to_vec()]);

        // A socket another process (here: this receiver) listens on is not.
        let error = Receiver::bind(&endpoint, &options).expect_err("in use");
        assert!(matches!(error, SocketError::InUse { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("uds {}: another process listens on this socket", path.display())
        );
        drop(receiver);

        // Anything else is left alone.
        std::fs::write(&path, b"precious").expect("regular file");
        let error = Receiver::bind(&endpoint, &options).expect_err("not a socket");
        assert!(matches!(error, SocketError::NotASocket { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("uds {}: the path exists and is not a socket, refusing to replace it", path.display())
        );
        assert_eq!(std::fs::read(&path).expect("still there"), b"precious");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn unix_drop_leaves_a_file_that_is_no_longer_ours() {
        let dir = temp_dir("notours");
        let path = dir.join("dsd.socket");
        let endpoint = Endpoint::Unix { path: path.clone(), mode: 0o622 };
        let receiver = Receiver::bind(&endpoint, &SocketOptions::default()).expect("bind");
        std::fs::remove_file(&path).expect("remove");
        std::fs::write(&path, b"someone else's").expect("write");
        drop(receiver);
        assert_eq!(std::fs::read(&path).expect("kept"), b"someone else's");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn bind_errors_name_the_endpoint() {
        let (receiver, _sender, to) = udp(SocketOptions::default());
        let error = Receiver::bind(&Endpoint::Udp(to), &SocketOptions::default()).expect_err("port taken");
        let SocketError::Bind { source, .. } = &error else { panic!("{error:?}") };
        assert_eq!(source.kind(), io::ErrorKind::AddrInUse);
        // The system's text follows: glibc "Address already in use", musl "Address in use".
        assert!(error.to_string().starts_with(&format!("udp {to}: cannot bind: Address ")), "{error}");
        drop(receiver);

        let options = SocketOptions { batch: 0, ..SocketOptions::default() };
        let error = Receiver::bind(&loopback(), &options).expect_err("batch 0");
        assert_eq!(error.to_string(), "udp 127.0.0.1:0: invalid options: batch is 0");
        let options = SocketOptions { max_datagram: 0, ..SocketOptions::default() };
        let error = Receiver::bind(&loopback(), &options).expect_err("max_datagram 0");
        assert_eq!(error.to_string(), "udp 127.0.0.1:0: invalid options: max_datagram is 0");
        let options = SocketOptions { max_datagram: MAX_DATAGRAM_BYTES + 1, ..SocketOptions::default() };
        let error = Receiver::bind(&loopback(), &options).expect_err("max_datagram too large");
        assert_eq!(error.to_string(), "udp 127.0.0.1:0: invalid options: max_datagram is over 65536");
        let options =
            SocketOptions { max_datagram: MAX_DATAGRAM_BYTES, batch: 1000, ..SocketOptions::default() };
        let receiver = Receiver::bind(&loopback(), &options).expect("the largest");
        assert_eq!(receiver.buffers.len(), DOGSTATSD_MAX_BATCH * (MAX_DATAGRAM_BYTES + 1));

        let endpoint = Endpoint::Unix { path: PathBuf::from("/nonexistent-dir/dsd.socket"), mode: 0o622 };
        let error = Receiver::bind(&endpoint, &SocketOptions::default()).expect_err("no directory");
        let SocketError::Bind { source, .. } = &error else { panic!("{error:?}") };
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        assert!(
            error.to_string().starts_with("uds /nonexistent-dir/dsd.socket: cannot bind: No such file"),
            "{error}"
        );
    }
}
