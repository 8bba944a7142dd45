//! A monotonic millisecond clock (uptime, u64) from SysTick.
//!
//! SysTick counts the core clock (CLKSOURCE = 1) down from a reload of one second's cycles and
//! interrupts when it wraps; the handler counts seconds, and the uptime is those seconds plus
//! what the counter went down since the last wrap. Counting 1 ms interrupts instead loses time
//! under QEMU when the host is busy: QEMU's timer then fires late and coalesces the periods it
//! missed (measured: 100 ms of uptime took up to 138 ms of wall time on a loaded machine). Here
//! a wrap is lost only if the interrupt is over a second late.
//!
//! The rate: QEMU's `lm3s6965evb` derives the core clock from the Stellaris RCC register, whose
//! reset value (SYSDIV = 15, 200 MHz PLL / 16) gives 12.5 MHz (not the board's 12 MHz crystal).
//! With 12 MHz, 100 ms of uptime took 96 ms of host time, exactly 12/12.5. QEMU without
//! `-icount` runs its virtual clock at the host's pace, so the uptime advances at real speed,
//! which the gateway's time exchange relies on; `tests/tests/firmware_qemu.rs`
//! (uptime_follows_wall_clock) measures it. A real board sets [`CORE_HZ`] to its own clock.

use core::cell::Cell;

use cortex_m::interrupt::Mutex;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;

/// The core clock SysTick counts, in Hz (QEMU's lm3s6965evb after reset).
pub const CORE_HZ: u32 = 12_500_000;
/// SysTick wraps once a second (the reload is 24 bits: up to 16,777,215).
const RELOAD: u32 = CORE_HZ - 1;
const CYCLES_PER_MS: u32 = CORE_HZ / 1000;

/// Seconds (SysTick wraps) since [`Clock::start`].
static SECONDS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// The uptime clock. Reading it is cheap (a short critical section).
#[derive(Clone, Copy)]
pub struct Clock {
    _private: (),
}

impl Clock {
    /// Starts SysTick from the core clock. Takes SYST, so there is one clock.
    pub fn start(mut syst: SYST) -> Clock {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        // The cleared counter reads 0 (the end of a period: 999 ms) until it loads the reload
        // value, one cycle later.
        while SYST::get_current() == 0 {}
        Clock { _private: () }
    }

    /// Milliseconds since the clock started (monotonic).
    pub fn now_ms(&self) -> u64 {
        cortex_m::interrupt::free(|cs| {
            let mut seconds = SECONDS.borrow(cs).get();
            let mut current = SYST::get_current();
            // Interrupts are masked: a wrap since the handler last ran is pending, not counted.
            // The counter may have wrapped just after it was read: read it again.
            if SCB::is_pendst_pending() {
                seconds += 1;
                current = SYST::get_current();
            }
            seconds * 1000 + u64::from((RELOAD - current.min(RELOAD)) / CYCLES_PER_MS)
        })
    }
}

#[exception]
fn SysTick() {
    cortex_m::interrupt::free(|cs| {
        let seconds = SECONDS.borrow(cs);
        seconds.set(seconds.get() + 1);
    });
}
