//! What the firmware asks QEMU's host through semihosting: its command line, a boot id, output
//! and the exit code. On a real board without a debugger these calls would halt the core, so a
//! board build replaces this module (a hardware RNG or a persisted counter for the boot id,
//! constants for the options, no exit).

use cortex_m_semihosting::{nr, syscall, syscall1};

/// The options `-append "..."` passes, as `key=value` words (unknown words are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `ticks=N`: how many 100 ms ticks to run (default 50).
    pub ticks: u32,
    /// `ack_timeout_ms=N`: how long to wait, in uptime after the last tick, until every payload is
    /// acknowledged (the device idle; default 30 s).
    pub ack_timeout_ms: u64,
    /// `report_stack=1`: print the stack's high-water mark before `demo done`.
    pub report_stack: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { ticks: 50, ack_timeout_ms: 30_000, report_stack: false }
    }
}

impl Options {
    /// Parses a command line: whitespace-separated words, `ticks=`, `ack_timeout_ms=` and
    /// `report_stack=1` read,
    /// everything else (QEMU puts the kernel's path first) ignored. A malformed value keeps its
    /// default.
    pub fn parse(line: &str) -> Options {
        let mut options = Options::default();
        for word in line.split_ascii_whitespace() {
            if let Some(value) = word.strip_prefix("ticks=") {
                options.ticks = value.parse().unwrap_or(options.ticks);
            } else if let Some(value) = word.strip_prefix("ack_timeout_ms=") {
                options.ack_timeout_ms = value.parse().unwrap_or(options.ack_timeout_ms);
            } else if word == "report_stack=1" {
                options.report_stack = true;
            }
        }
        options
    }
}

/// The command line (SYS_GET_CMDLINE). With `-kernel ELF -append "ARGS"` and no
/// `-semihosting-config arg=`, QEMU answers `"ELF ARGS"`. Empty if the host has none, or if it
/// does not fit in `buf` or is not UTF-8.
pub fn cmdline(buf: &mut [u8]) -> &str {
    let mut block = [buf.as_mut_ptr() as usize, buf.len()];
    // SAFETY: SYS_GET_CMDLINE's parameter block is (buffer address, buffer length); the host
    // writes at most that many bytes (NUL included) into `buf`, which is borrowed mutably here,
    // and the new length into `block[1]`.
    let failed = unsafe { syscall1(nr::GET_CMDLINE, block.as_mut_ptr() as usize) } != 0;
    if failed {
        return "";
    }
    let len = block[1].min(buf.len());
    let line = &buf[..len];
    let line = line.split(|&b| b == 0).next().unwrap_or(line);
    core::str::from_utf8(line).unwrap_or("")
}

/// A 32-bit id different at every boot: 4 bytes of the host's `/dev/urandom`, read through
/// semihosting (SYS_OPEN, SYS_READ). If that fails, the host's time in seconds (SYS_TIME), the
/// centiseconds since QEMU started (SYS_CLOCK) and `jitter` (SysTick's counter, 80 ns steps)
/// mixed by MurmurHash3's finaliser; those alone can repeat for two boots in the same second. A
/// real board uses its hardware RNG or a counter persisted in flash and incremented at each boot.
pub fn boot_id(jitter: u32) -> u32 {
    if let Some(id) = host_random() {
        return id;
    }
    // SAFETY: SYS_TIME and SYS_CLOCK take no parameter block and only return a value.
    let (seconds, centis) = unsafe { (syscall!(TIME), syscall!(CLOCK)) };
    mix(seconds as u32 ^ mix((centis as u32).wrapping_mul(0x9E37_79B9) ^ jitter))
}

fn host_random() -> Option<u32> {
    const PATH: &[u8] = b"/dev/urandom\0";
    // SAFETY: SYS_OPEN's block is (NUL-terminated name, mode, name length without the NUL);
    // mode 1 is "rb". The host only reads the name.
    let fd = unsafe { syscall!(OPEN, PATH.as_ptr(), 1, PATH.len() - 1) } as isize;
    if fd < 0 {
        return None;
    }
    let mut bytes = [0u8; 4];
    // SAFETY: SYS_READ's block is (handle, buffer, length); the host writes at most 4 bytes into
    // `bytes` and returns how many it did not read. SYS_CLOSE takes the handle.
    let missing = unsafe { syscall!(READ, fd, bytes.as_mut_ptr(), bytes.len()) };
    unsafe { syscall!(CLOSE, fd) };
    (missing == 0).then(|| u32::from_le_bytes(bytes))
}

fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}
