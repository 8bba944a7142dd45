//! The stack's high-water mark: the free RAM between static data and the stack pointer is
//! painted with a pattern at boot, and the lowest word no longer holding it is the deepest the
//! stack went (interrupt frames included). For sizing; `report_stack=1` prints it.

use core::ptr::{addr_of, read_volatile, write_volatile};

const PAINT: u32 = 0x5AC5_5AC5;
/// Left unpainted under the stack pointer: `paint`'s own calls.
const MARGIN: usize = 64;

extern "C" {
    /// cortex-m-rt's link.x: the lowest address the stack may reach (the end of static data).
    static _stack_end: u32;
    /// cortex-m-rt's link.x: the top of the stack (the end of RAM).
    static _stack_start: u32;
}

// Only the symbols' addresses are taken, never their values.
fn bottom() -> usize {
    addr_of!(_stack_end) as usize
}

fn top() -> usize {
    addr_of!(_stack_start) as usize
}

/// Paints the unused stack. Call once, early in `main`.
pub fn paint() {
    let limit = (cortex_m::register::msp::read() as usize).saturating_sub(MARGIN);
    let mut word = bottom();
    while word + 4 <= limit {
        // SAFETY: [bottom, limit) is RAM below the current stack pointer (minus a margin) and
        // above all static data (link.x's _stack_end): nothing lives there yet, and a word is
        // 4-byte aligned (link.x asserts _stack_end % 4 == 0).
        unsafe { write_volatile(word as *mut u32, PAINT) };
        word += 4;
    }
}

/// Bytes of stack used so far at most, and the bytes available to it.
pub fn used() -> (usize, usize) {
    let (bottom, top) = (bottom(), top());
    let mut word = bottom;
    // SAFETY: [bottom, top) is the stack's RAM, word-aligned; reading it has no effect.
    while word < top && unsafe { read_volatile(word as *const u32) } == PAINT {
        word += 4;
    }
    (top - word, top - bottom)
}
