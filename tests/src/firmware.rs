//! The demo firmware (`firmware/`, issue 11) under QEMU's `lm3s6965evb`: built once per test
//! process through `scripts/firmware-qemu.sh --build-only`, started with its UART0 on a Unix
//! socket the test is connected to. Semihosting output (the firmware's own lines) is QEMU's
//! stdout, and the firmware's exit status QEMU's.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::TempDir;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repository").to_path_buf()
}

/// The release ELF of the demo firmware, built on first use (the script installs the
/// thumbv7m target and QEMU when missing). Panics with the script's output if the build fails.
pub fn firmware_elf() -> &'static Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        let out = Command::new(root().join("scripts/firmware-qemu.sh"))
            .arg("--build-only")
            .output()
            .expect("run scripts/firmware-qemu.sh --build-only");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/firmware-qemu.sh --build-only failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let elf = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
        assert!(elf.is_file(), "the build's last line is not the ELF: {stdout}");
        elf
    })
}

/// What the firmware is started with (its semihosting command line).
#[derive(Debug, Clone, Copy)]
pub struct FirmwareOptions {
    /// `ticks=N`: 100 ms ticks before it closes the open interval and waits until idle.
    pub ticks: u32,
    /// `ack_timeout_ms=N`: how long it waits to be idle, everything acknowledged (default 30 s).
    pub ack_timeout_ms: Option<u64>,
}

/// The firmware running under QEMU, its UART0 connected. QEMU is killed on drop.
pub struct Firmware {
    child: Child,
    /// UART0: what the firmware writes is read here, what is written here it reads.
    pub serial: UnixStream,
    dir: TempDir,
}

/// How QEMU ended.
#[derive(Debug)]
pub struct FirmwareExit {
    /// QEMU's exit status (the firmware's semihosting exit code).
    pub status: ExitStatus,
    /// QEMU's stdout: the firmware's semihosting output.
    pub stdout: String,
    /// QEMU's stderr.
    pub stderr: String,
}

impl Firmware {
    /// Starts QEMU on the demo firmware and connects to its UART0 (QEMU waits for that
    /// connection before the firmware runs). Fails the test if the socket is not there in 30 s.
    pub fn start(options: FirmwareOptions) -> Firmware {
        let elf = firmware_elf();
        let dir = TempDir::new("firmware");
        let socket = dir.0.join("uart0.sock");
        let mut command = Command::new(root().join("scripts/firmware-qemu.sh"));
        command
            .arg("--elf")
            .arg(elf)
            .arg("--serial")
            .arg(format!("unix:{}", socket.display()))
            .arg("--ticks")
            .arg(options.ticks.to_string());
        if let Some(ms) = options.ack_timeout_ms {
            command.arg("--ack-timeout-ms").arg(ms.to_string());
        }
        let stdout = File::create(dir.0.join("stdout")).expect("create QEMU's stdout file");
        let stderr = File::create(dir.0.join("stderr")).expect("create QEMU's stderr file");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start scripts/firmware-qemu.sh");
        let deadline = Instant::now() + Duration::from_secs(30);
        let serial = loop {
            if let Ok(stream) = UnixStream::connect(&socket) {
                break stream;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let stderr = std::fs::read_to_string(dir.0.join("stderr")).unwrap_or_default();
                panic!("QEMU exited ({status}) before listening on {}:\n{stderr}", socket.display());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("QEMU did not listen on {} within 30 s", socket.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Firmware { child, serial, dir }
    }

    /// Waits for QEMU to exit (polling; fails the test after `within`) and collects its output.
    pub fn wait(mut self, within: Duration) -> FirmwareExit {
        let deadline = Instant::now() + within;
        let status = loop {
            match self.child.try_wait().expect("wait for QEMU") {
                Some(status) => break status,
                None if Instant::now() > deadline => {
                    panic!("QEMU still running after {within:?}; its output so far:\n{}", self.stdout());
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        FirmwareExit { status, stdout: self.stdout(), stderr: self.read_output("stderr") }
    }

    /// QEMU's stdout so far.
    pub fn stdout(&self) -> String {
        self.read_output("stdout")
    }

    fn read_output(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.0.join(name)).unwrap_or_default()
    }
}

impl Drop for Firmware {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
