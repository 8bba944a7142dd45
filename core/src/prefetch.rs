//! A hint to the processor to start fetching a cache line: the one place the core uses `unsafe`.
//!
//! A prefetch instruction reads nothing the program sees and never faults, whatever the address
//! (x86's `PREFETCHT0`, AArch64's `PRFM PLDL1KEEP`); it only starts moving the line towards the
//! first-level cache. Its address comes from a reference here, so it is valid anyway. Elsewhere
//! (32-bit Arm boards, microcontrollers without a data cache) it does nothing.

/// Starts fetching the cache line holding `value`'s first byte.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn prefetch<T: ?Sized>(value: &T) {
    let address = (value as *const T).cast::<u8>();
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 processor has; a prefetch neither
    // reads nor writes memory the program can observe, and never faults.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(address.cast::<i8>());
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `PRFM` neither reads nor writes memory the program can observe, never faults, and
    // touches no register but its address operand.
    unsafe {
        core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) address, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = address;
}
