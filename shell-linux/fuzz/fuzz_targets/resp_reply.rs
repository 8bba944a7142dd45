//! Arbitrary bytes as Redis's replies to one page read of `store/resp.rs`, run as the store runs
//! it (`ZRANGEBYSCORE … WITHSCORES`, the `HSTRLEN` pipeline, `HMGET`) and handed over in chunks of
//! any size. Input: `LIMIT`, `max_record / 16` and the chunk size (one byte each), then the replies.
//!
//! Asserts, besides no panic:
//! - memory follows what arrived, not what a header declares: no single allocation is larger than
//!   the reader's buffer, the page's records, one `max_record` and twice the input (a declared
//!   `$1099511627776` would be 1 TiB);
//! - what is accepted is consistent: at most `LIMIT` records, one length per record, a value only
//!   for a record within `max_record`, a record marked oversize only when longer, every id and
//!   value a run of the input's bytes;
//! - the only I/O failure is the replies' end (the stream has no other).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use chouette_agent::limits::RESP_READ_BUFFER_BYTES;
use chouette_agent::store::resp::{Failure, PageReader};
use chouette_agent::store::Record;
use libfuzzer_sys::fuzz_target;

/// The system allocator, noting the largest single allocation (a fuzz target runs one thread).
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only sizes are noted.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// A server that answers `replies`, `chunk` bytes per read at most, whatever it is sent.
struct Replies<'a> {
    replies: &'a [u8],
    chunk: usize,
}

impl Read for Replies<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.replies.len());
        let (head, rest) = self.replies.split_at(n);
        buf[..n].copy_from_slice(head);
        self.replies = rest;
        Ok(n)
    }
}

impl Write for Replies<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A failure the replies can cause: a server error, a protocol error, or their end.
fn check(failure: &Failure) {
    if let Failure::Io(e) = failure {
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }
}

fuzz_target!(|data: &[u8]| {
    let [limit, max_record, chunk, replies @ ..] = data else { return };
    let (limit, max_record) = (usize::from(*limit), usize::from(*max_record) * 16);
    let chunk = if *chunk == 0 { usize::MAX } else { usize::from(*chunk) };
    let bound =
        RESP_READ_BUFFER_BYTES + max_record + limit * std::mem::size_of::<Record>() + 2 * replies.len() + 64;
    LARGEST.store(0, Ordering::Relaxed);
    let mut reader = PageReader::new(Replies { replies, chunk });
    page_read(&mut reader, replies, limit, max_record);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest <= bound, "an allocation of {largest} bytes for {} bytes of replies", replies.len());
});

/// One page, as `RedisStore::read_range` and `fetch_values` read it.
fn page_read(reader: &mut PageReader<Replies<'_>>, replies: &[u8], limit: usize, max_record: usize) {
    let mut records = Vec::new();
    if let Err(e) = reader.range("k", "-inf", "+inf", 0, limit, &mut records) {
        return check(&e);
    }
    assert!(records.len() <= limit);
    for r in &records {
        assert!(holds(replies, &r.id));
        assert!(r.value.is_none() && r.oversize.is_none());
    }
    let lengths = match reader.lengths("h", &records) {
        Ok(lengths) => lengths,
        Err(e) => return check(&e),
    };
    assert_eq!(lengths.len(), records.len());
    for (record, &len) in records.iter_mut().zip(&lengths) {
        if len > max_record as u64 {
            record.oversize = Some(len);
        }
    }
    let marked: Vec<bool> = records.iter().map(|r| r.oversize.is_some()).collect();
    if let Err(e) = reader.values("h", &mut records, max_record) {
        return check(&e);
    }
    for (record, was_marked) in records.iter().zip(marked) {
        match (&record.value, record.oversize) {
            (Some(value), None) => {
                assert!(value.len() <= max_record);
                assert!(holds(replies, value));
            }
            (None, Some(len)) => assert!(was_marked || len > max_record as u64),
            (None, None) => {}
            (Some(_), Some(_)) => panic!("a record both loaded and oversize"),
        }
    }
}
