//! The tag rules the InfluxDB and OpenTSDB encoders share: which tags a point carries, in which
//! order, with which `host`.
//!
//! - The candidates are the record's own tags, then the global tags (`extra_tags`), then
//!   `host=<host>`.
//! - `host` is the caller's `host` if it gives one, else the record's own `host` field (an empty
//!   one counts as none). When there
//!   is one, every `host` tag of the record or the globals is replaced by it; when there is none,
//!   a `host` tag is kept like any other.
//! - A bare tag (`foo`, no colon), an empty value (`foo:`) and an empty key (`:foo`) are omitted:
//!   neither format can carry them (InfluxDB refuses an empty tag value, OpenTSDB tags are
//!   key/value pairs).
//! - Keys are compared as the format writes them (after its replacements or its sanitizing),
//!   the tags are written sorted by that key, bytewise, and when a key repeats the first
//!   occurrence wins (the record's tag over a global one).
//!
//! No heap: up to 64 candidates are sorted in a stack array (a stable insertion sort, then equal
//! neighbours skipped); beyond that, a walk picks the next-larger key each time (quadratic, no
//! memory). Both give the same output (a unit test checks it).

use core::cmp::Ordering;

use crate::Tag;

/// The `host` a point is written with: the caller's, else the record's own (an empty one counts
/// as none).
pub(crate) fn effective_host<'h>(host: Option<&'h str>, record_host: Option<&'h str>) -> Option<&'h str> {
    host.filter(|h| !h.is_empty()).or(record_host.filter(|h| !h.is_empty()))
}

/// Calls `f(key, value)` for every tag the point carries (see the module docs), sorted by key as
/// `cmp` orders the written keys, each written key once (the first occurrence wins). Returns how
/// many tags were written.
pub(crate) fn for_each_sorted<'t>(
    own: &'t [Tag<'t>],
    extra: &'t [Tag<'t>],
    host: Option<&'t str>,
    cmp: impl Fn(&str, &str) -> Ordering,
    mut f: impl FnMut(&'t str, &'t str),
) -> usize {
    let candidates = || {
        own.iter()
            .chain(extra)
            .filter(move |t| !(host.is_some() && t.key == "host"))
            .filter_map(|t| match t.value {
                Some(value) if !value.is_empty() && !t.key.is_empty() => Some((t.key, value)),
                _ => None,
            })
            .chain(host.map(|h| ("host", h)))
    };
    // The usual case: the candidates fit on the stack; a stable insertion sort keeps the first
    // occurrence of a key first, so skipping equal neighbours keeps it.
    let mut sorted: heapless::Vec<(&'t str, &'t str), SORT_CAPACITY> = heapless::Vec::new();
    if candidates().all(|pair| sorted.push(pair).is_ok()) {
        for i in 1..sorted.len() {
            let mut j = i;
            while j > 0 && cmp(sorted[j - 1].0, sorted[j].0) == Ordering::Greater {
                sorted.swap(j - 1, j);
                j -= 1;
            }
        }
        let mut written = 0;
        let mut prev: Option<&'t str> = None;
        for &(key, value) in &sorted {
            if prev.is_some_and(|prev| cmp(prev, key) == Ordering::Equal) {
                continue;
            }
            f(key, value);
            written += 1;
            prev = Some(key);
        }
        return written;
    }
    // More candidates than that: pick the next-larger key each time (quadratic, no memory).
    let mut written = 0;
    let mut prev: Option<&'t str> = None;
    loop {
        let mut best: Option<(&'t str, &'t str)> = None;
        for (key, value) in candidates() {
            if let Some(prev) = prev {
                if cmp(key, prev) != Ordering::Greater {
                    continue;
                }
            }
            // Strictly smaller only: among equal keys the first occurrence stays.
            if best.is_none_or(|(best_key, _)| cmp(key, best_key) == Ordering::Less) {
                best = Some((key, value));
            }
        }
        let Some((key, value)) = best else { break };
        f(key, value);
        written += 1;
        prev = Some(key);
    }
    written
}

/// Candidates sorted on the stack (32 B each on 64-bit: 2 KiB); more fall back to the
/// quadratic walk.
const SORT_CAPACITY: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(
        own: &[Tag<'_>],
        extra: &[Tag<'_>],
        host: Option<&str>,
    ) -> heapless::Vec<(heapless::String<16>, heapless::String<16>), 16> {
        let mut out = heapless::Vec::new();
        for_each_sorted(
            own,
            extra,
            host,
            |a, b| a.cmp(b),
            |k, v| {
                out.push((heapless::String::try_from(k).unwrap(), heapless::String::try_from(v).unwrap()))
                    .unwrap();
            },
        );
        out
    }

    fn pairs(out: &[(heapless::String<16>, heapless::String<16>)]) -> heapless::Vec<(&str, &str), 16> {
        out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn sorted_first_wins_bare_and_empty_omitted() {
        let own = [
            Tag::new("z", "1"),
            Tag::new("a", "first"),
            Tag::parse("bare"),
            Tag::new("a", "second"),
            Tag::new("e", ""),
            Tag::new("", "v"),
        ];
        let extra = [Tag::new("a", "global"), Tag::new("g", "1"), Tag::new("z", "2")];
        let out = collect(&own, &extra, None);
        assert_eq!(pairs(&out).as_slice(), &[("a", "first"), ("g", "1"), ("z", "1")]);
    }

    #[test]
    fn the_stack_sort_and_the_walk_agree() {
        // 70 candidates take the walk; the same 70 split so that 60 fit take the stack sort.
        let keys: heapless::Vec<heapless::String<8>, 70> = (0..70u32)
            .map(|i| {
                let mut s = heapless::String::new();
                core::fmt::write(&mut s, format_args!("k{}", (i * 37) % 23)).unwrap();
                s
            })
            .collect();
        let values: heapless::Vec<heapless::String<8>, 70> = (0..70u32)
            .map(|i| {
                let mut s = heapless::String::new();
                core::fmt::write(&mut s, format_args!("v{i}")).unwrap();
                s
            })
            .collect();
        let own: heapless::Vec<Tag<'_>, 70> = keys.iter().zip(&values).map(|(k, v)| Tag::new(k, v)).collect();
        let mut walk: heapless::Vec<(&str, &str), 70> = heapless::Vec::new();
        for_each_sorted(&own, &[], None, |a, b| a.cmp(b), |k, v| walk.push((k, v)).unwrap());
        let mut stack: heapless::Vec<(&str, &str), 70> = heapless::Vec::new();
        for_each_sorted(
            &own[..SORT_CAPACITY],
            &[],
            None,
            |a, b| a.cmp(b),
            |k, v| stack.push((k, v)).unwrap(),
        );
        assert_eq!(walk.len(), 23);
        assert_eq!(walk, stack);
        assert_eq!((walk[0], walk[22]), (("k0", "v0"), ("k9", "v22"))); // first occurrences (i = 22 is the first with 37i % 23 = 9)
    }

    #[test]
    fn host_replaces_host_tags_or_is_kept_when_absent() {
        let own = [Tag::new("host", "tag"), Tag::new("b", "1")];
        let extra = [Tag::new("host", "global")];
        assert_eq!(pairs(&collect(&own, &extra, Some("h"))).as_slice(), &[("b", "1"), ("host", "h")]);
        assert_eq!(pairs(&collect(&own, &extra, None)).as_slice(), &[("b", "1"), ("host", "tag")]);
        assert_eq!(effective_host(Some(""), Some("")), None);
        assert_eq!(effective_host(Some(""), Some("rec")), Some("rec"));
        assert_eq!(effective_host(None, Some("rec")), Some("rec"));
        assert_eq!(effective_host(Some("arg"), Some("rec")), Some("arg"));
    }
}
