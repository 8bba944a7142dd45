//! Arbitrary bytes into `collect/json.rs` (Docker and kubelet replies, backend error bodies,
//! dead-letter envelopes): `Json::parse`, then every accepted value walked whole (`members`,
//! `get`, `elements`, `as_str`, `as_f64`).
//!
//! Asserts, besides no panic:
//! - every value's text is a slice of its parent's (of the input at the top), with no surrounding
//!   whitespace, and parses alone to the same text; a borrowed string is a slice of its value's;
//!   `get(k)` is the last member named `k`; a number reads finite or not at all;
//! - the module's documented parity with serde_json, which the collectors used before: what
//!   serde_json reads, `Json` reads the same (numbers, strings, members, elements), unless it nests
//!   deeper than the scanner's `MAX_DEPTH`; and what `Json` accepts that serde_json refuses holds
//!   one of its documented leniencies (a number beyond `f64`, a lone surrogate escape), read as
//!   nothing.
#![no_main]

use chouette_agent::collect::json::{Json, JsonDoc};
use chouette_core::wire::json::MAX_DEPTH;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let ours = Json::parse(data);
    let serde = serde_json::from_slice::<Value>(data);
    match (&ours, &serde) {
        (Ok(doc), _) => {
            let lenient = walk(*doc, data);
            match &serde {
                Ok(value) => agree(*doc, value),
                Err(e) => assert!(lenient, "serde_json refuses ({e}) what Json reads"),
            }
        }
        (Err(e), Ok(value)) => assert!(depth(value) >= MAX_DEPTH, "Json refuses ({e}) what serde_json reads"),
        (Err(_), Err(_)) => {}
    }
});

/// Whether `inner` lies within `outer` (same memory).
fn within(inner: &[u8], outer: &[u8]) -> bool {
    let (start, end) = (outer.as_ptr() as usize, outer.as_ptr() as usize + outer.len());
    let at = inner.as_ptr() as usize;
    start <= at && at + inner.len() <= end
}

/// Walks `v` (a slice of `parent`) and all it holds; whether it met a leniency.
fn walk(v: Json<'_>, parent: &[u8]) -> bool {
    let raw = v.raw();
    assert!(within(raw.as_bytes(), parent), "{raw:?} outside its parent");
    assert!(!raw.is_empty() && raw.trim_matches([' ', '\n', '\r', '\t']) == raw, "{raw:?}");
    assert_eq!(Json::parse(raw.as_bytes()).map(|again| again.raw()), Ok(raw));
    let mut lenient = false;
    match raw.as_bytes()[0] {
        b'{' => {
            let Some(members) = v.members() else {
                // A key that does not decode (a lone surrogate): the object reads as nothing.
                assert!(v.elements().is_none());
                return true;
            };
            for (key, value) in &members {
                lenient |= walk(*value, raw.as_bytes());
                let last = members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.raw());
                let got = v.get(key).map(|g| g.raw());
                assert_eq!(got.map(str::as_ptr), last.map(str::as_ptr), "get({key:?})");
            }
            assert!(v.elements().is_none() && v.as_str().is_none() && v.as_f64().is_none());
        }
        b'[' => {
            for element in v.elements().expect("an array has elements") {
                lenient |= walk(element, raw.as_bytes());
            }
            assert!(v.members().is_none() && v.get("").is_none() && v.as_f64().is_none());
        }
        b'"' => match v.as_str() {
            Some(std::borrow::Cow::Borrowed(s)) => assert!(within(s.as_bytes(), raw.as_bytes())),
            Some(std::borrow::Cow::Owned(_)) => {}
            None => lenient = true,
        },
        b't' | b'f' | b'n' => {
            assert!(["true", "false", "null"].contains(&raw));
            assert!(v.as_str().is_none() && v.as_f64().is_none());
        }
        _ => match v.as_f64() {
            Some(n) => assert!(n.is_finite()),
            None => lenient = true,
        },
    }
    lenient
}

/// `ours` reads what `value` (serde_json's) holds.
fn agree(ours: Json<'_>, value: &Value) {
    match value {
        Value::Null | Value::Bool(_) => assert_eq!(ours.raw(), value.to_string()),
        Value::Number(n) => assert_eq!(ours.as_f64(), n.as_f64(), "{}", ours.raw()),
        Value::String(s) => assert_eq!(ours.as_str().as_deref(), Some(s.as_str())),
        Value::Array(elements) => {
            let mine = ours.elements().expect("an array");
            assert_eq!(mine.len(), elements.len());
            for (m, e) in mine.into_iter().zip(elements) {
                agree(m, e);
            }
        }
        Value::Object(map) => {
            let members = ours.members().expect("an object");
            let mut keys: Vec<_> = members.iter().map(|(k, _)| k.as_ref()).collect();
            keys.sort_unstable();
            keys.dedup();
            assert!(keys.iter().copied().eq(map.keys().map(String::as_str)));
            for (key, v) in map {
                agree(ours.get(key).expect("a member"), v);
            }
        }
    }
}

/// How deep `value` nests objects and arrays (a scalar: 0).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
