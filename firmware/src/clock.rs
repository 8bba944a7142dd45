//! A monotonic millisecond clock (uptime, u64) from SysTick.
//!
//! SysTick runs from the core clock (CLKSOURCE = 1) and interrupts every millisecond; the handler
//! counts milliseconds. QEMU's `lm3s6965evb` clocks the core at 12 MHz after reset (the
//! Stellaris RCC's reset value: 12 MHz crystal, PLL bypassed; QEMU derives SysTick's rate from
//! it), so the reload is 12,000 - 1. Measured against the host's wall clock in
//! `tests/tests/firmware_qemu.rs` (uptime_follows_wall_clock): QEMU without `-icount` runs
//! SysTick on its virtual clock, which follows the host's, so uptime advances at real speed,
//! which the gateway's time exchange relies on. A real board sets `CORE_HZ` to its own clock.

use core::cell::Cell;

use cortex_m::interrupt::Mutex;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;

/// The core clock SysTick counts, in Hz.
pub const CORE_HZ: u32 = 12_000_000;

/// Milliseconds since [`Clock::start`].
static MILLIS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// The uptime clock. Reading it is cheap (a critical section around a u64).
#[derive(Clone, Copy)]
pub struct Clock {
    _private: (),
}

impl Clock {
    /// Starts SysTick: 1 ms interrupts from the core clock. Takes SYST, so there is one clock.
    pub fn start(mut syst: SYST) -> Clock {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(CORE_HZ / 1000 - 1);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Clock { _private: () }
    }

    /// Milliseconds since the clock started (monotonic; wraps after 584 million years).
    pub fn now_ms(&self) -> u64 {
        cortex_m::interrupt::free(|cs| MILLIS.borrow(cs).get())
    }
}

#[exception]
fn SysTick() {
    cortex_m::interrupt::free(|cs| {
        let millis = MILLIS.borrow(cs);
        millis.set(millis.get() + 1);
    });
}
