//! The ring: closed intervals' data payloads, oldest first, waiting for room in the send window.
//!
//! Payloads sit back to back in a byte arena (`BYTES`), at most `ENTRIES` of them; an insert or
//! a removal moves the bytes after it (a few hundred bytes, a few times a second at most). What
//! to do when it is full (merge, then drop) is the device's business ([`crate::Device`]).

/// Payloads in a fixed arena.
pub struct Ring<const BYTES: usize, const ENTRIES: usize> {
    bytes: [u8; BYTES],
    lens: [u16; ENTRIES],
    len: usize,
}

impl<const BYTES: usize, const ENTRIES: usize> Ring<BYTES, ENTRIES> {
    /// An empty ring.
    pub const fn new() -> Self {
        const {
            assert!(
                ENTRIES >= 2 && BYTES >= 2 * chouette_core::link::MAX_PAYLOAD && BYTES <= u16::MAX as usize
            )
        };
        Ring { bytes: [0; BYTES], lens: [0; ENTRIES], len: 0 }
    }

    /// Payloads held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.offset(self.len)
    }

    /// Whether `len` more bytes fit as one more payload.
    pub fn fits(&self, len: usize) -> bool {
        self.len < ENTRIES && self.used() + len <= BYTES
    }

    fn offset(&self, index: usize) -> usize {
        self.lens[..index].iter().map(|&len| usize::from(len)).sum()
    }

    /// Payload `index` (0 is the oldest).
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        if index >= self.len {
            return None;
        }
        let start = self.offset(index);
        Some(&self.bytes[start..start + usize::from(self.lens[index])])
    }

    /// Inserts `payload` before entry `index` (`len()` appends); `false` when it does not fit.
    pub fn insert(&mut self, index: usize, payload: &[u8]) -> bool {
        if index > self.len || !self.fits(payload.len()) {
            return false;
        }
        let at = self.offset(index);
        let used = self.used();
        self.bytes.copy_within(at..used, at + payload.len());
        self.bytes[at..at + payload.len()].copy_from_slice(payload);
        self.lens.copy_within(index..self.len, index + 1);
        self.lens[index] = payload.len() as u16;
        self.len += 1;
        true
    }

    /// Appends `payload` (the newest); `false` when it does not fit.
    pub fn push(&mut self, payload: &[u8]) -> bool {
        self.insert(self.len, payload)
    }

    /// Removes entry `index`.
    pub fn remove(&mut self, index: usize) {
        if index >= self.len {
            return;
        }
        let at = self.offset(index);
        let len = usize::from(self.lens[index]);
        let used = self.used();
        self.bytes.copy_within(at + len..used, at);
        self.lens.copy_within(index + 1..self.len, index);
        self.len -= 1;
    }

    /// Replaces entry `index` by `payload`; `false` (nothing changed) when it does not fit.
    pub fn replace(&mut self, index: usize, payload: &[u8]) -> bool {
        if index >= self.len || self.used() - usize::from(self.lens[index]) + payload.len() > BYTES {
            return false;
        }
        self.remove(index);
        self.insert(index, payload)
    }

    /// Replaces entries `index` and `index + 1` by `payload` (their merge, at most as long as
    /// both together: it always fits).
    pub fn replace_pair(&mut self, index: usize, payload: &[u8]) -> bool {
        if index + 1 >= self.len {
            return false;
        }
        let freed = usize::from(self.lens[index]) + usize::from(self.lens[index + 1]);
        if self.used() - freed + payload.len() > BYTES {
            return false;
        }
        self.remove(index + 1);
        self.remove(index);
        self.insert(index, payload)
    }
}

impl<const BYTES: usize, const ENTRIES: usize> Default for Ring<BYTES, ENTRIES> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_removes_and_replaces_in_order() {
        let mut ring = Ring::<1200, 4>::new();
        assert!(ring.push(b"bb"));
        assert!(ring.insert(0, b"a"));
        assert!(ring.push(b"ccc"));
        assert_eq!(
            (ring.get(0), ring.get(1), ring.get(2)),
            (Some(&b"a"[..]), Some(&b"bb"[..]), Some(&b"ccc"[..]))
        );
        assert!(ring.replace_pair(0, b"ab"));
        assert_eq!((ring.len(), ring.get(0), ring.get(1)), (2, Some(&b"ab"[..]), Some(&b"ccc"[..])));
        assert!(ring.replace(1, b"cd"));
        assert_eq!((ring.len(), ring.get(0), ring.get(1)), (2, Some(&b"ab"[..]), Some(&b"cd"[..])));
        assert!(ring.replace(1, b"ccc"));
        ring.remove(0);
        assert_eq!((ring.len(), ring.used(), ring.get(0)), (1, 3, Some(&b"ccc"[..])));
        assert!(ring.push(&[7; 1197]));
        assert!(!ring.push(b"x"), "1200 bytes used: nothing more fits");
        assert!(ring.get(2).is_none());
    }

    #[test]
    fn refuses_past_its_entries() {
        let mut ring = Ring::<1000, 2>::new();
        assert!(ring.push(b"1") && ring.push(b"2"));
        assert!(!ring.fits(0));
        assert!(!ring.insert(0, b"0"));
        assert_eq!(ring.get(0), Some(&b"1"[..]));
    }
}
