//! The LM3S6965's UART0, an ARM PL011 (QEMU's `-serial` number 0), polled, behind `embedded-io`.
//!
//! QEMU's PL011 needs no baud rate: it only needs enabling. The FIFOs are enabled (16 bytes each
//! way); while the receive FIFO is full QEMU stops reading its chardev, so bytes are not lost,
//! only held back on the host side.

use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};

/// UART0's registers.
const BASE: usize = 0x4000_C000;
/// Data: a write sends a byte, a read takes one received byte (bits 8..11 are error flags).
const DR: usize = 0x00;
/// Flags.
const FR: usize = 0x18;
/// Line control: word length, FIFO enable.
const LCRH: usize = 0x2C;
/// Control: enables.
const CTL: usize = 0x30;

/// FR: the UART is still sending.
const FR_BUSY: u32 = 1 << 3;
/// FR: the receive FIFO is empty.
const FR_RXFE: u32 = 1 << 4;
/// FR: the transmit FIFO is full.
const FR_TXFF: u32 = 1 << 5;
/// LCRH: 8-bit words, FIFOs enabled.
const LCRH_8BIT_FIFO: u32 = (0b11 << 5) | (1 << 4);
/// CTL: UART enable, transmit enable, receive enable.
const CTL_ENABLE: u32 = 0x301;

/// UART0, enabled. There is one UART0: [`Uart0::take`] hands it out once.
pub struct Uart0 {
    _private: (),
}

impl Uart0 {
    /// Enables UART0 and returns it; `None` if it was taken already.
    pub fn take() -> Option<Uart0> {
        static TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
        if TAKEN.swap(true, core::sync::atomic::Ordering::AcqRel) {
            return None;
        }
        write(LCRH, LCRH_8BIT_FIFO);
        write(CTL, CTL_ENABLE);
        Some(Uart0 { _private: () })
    }

    fn flags(&self) -> u32 {
        read(FR)
    }

    /// Whether a received byte is waiting.
    pub fn rx_ready(&self) -> bool {
        self.flags() & FR_RXFE == 0
    }

    fn read_byte(&mut self) -> u8 {
        // The low 8 bits are the byte; framing/parity/break/overrun flags above them are dropped
        // (the link's CRC catches damaged frames).
        (read(DR) & 0xFF) as u8
    }

    fn write_byte(&mut self, byte: u8) {
        while self.flags() & FR_TXFF != 0 {}
        write(DR, u32::from(byte));
    }
}

fn read(offset: usize) -> u32 {
    // SAFETY: BASE + offset is one of UART0's word-aligned memory-mapped registers on the
    // LM3S6965 (offsets are the constants above); reading FR, DR or LCRH has no effect beyond
    // the UART's (DR pops the byte read, which is what the caller wants).
    unsafe { read_volatile((BASE + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`; the values written are those the PL011's documentation defines
    // for these registers, and only `Uart0` (handed out once) writes them.
    unsafe { write_volatile((BASE + offset) as *mut u32, value) }
}

impl embedded_io::ErrorType for Uart0 {
    type Error = Infallible;
}

impl embedded_io::Read for Uart0 {
    /// Blocks until at least one byte arrived (as the trait requires), then takes what else is
    /// already waiting, up to `buf.len()`. Check [`embedded_io::ReadReady`] first not to block.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while !self.rx_ready() {}
        let mut n = 0;
        while n < buf.len() && self.rx_ready() {
            buf[n] = self.read_byte();
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for Uart0 {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.rx_ready())
    }
}

impl embedded_io::Write for Uart0 {
    /// Queues every byte of `buf` (waiting while the transmit FIFO is full).
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &byte in buf {
            self.write_byte(byte);
        }
        Ok(buf.len())
    }

    /// Waits until the last byte left the UART.
    fn flush(&mut self) -> Result<(), Infallible> {
        while self.flags() & FR_BUSY != 0 {}
        Ok(())
    }
}
