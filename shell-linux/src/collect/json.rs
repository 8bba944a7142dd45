//! Schema-less lookups in the JSON documents the collectors read (Docker stats, the kubelet's
//! Summary API): `doc.get("cpu_stats")?.get("cpu_usage")?.as_f64()`, with no tree built.
//!
//! [`Json`] is one value's text, checked once by [`Json::parse`] with the core's zero-copy
//! scanner ([`chouette_core::wire::json`]); each lookup rescans only the value it is asked about.
//! It reads what `serde_json::from_slice::<Value>` read before (measured: 23.7 KB of binary
//! less): `NaN`/`Infinity` are refused as serde_json refuses them, a repeated key's last value
//! wins as in serde_json's map, numbers read as `f64`. Nesting is limited to the scanner's
//! [`MAX_DEPTH`](chouette_core::wire::json::MAX_DEPTH) (32; the Docker and kubelet fixtures nest 6 deep at most).
//! Two values serde_json refuses with their whole document are read here as nothing, the rest
//! of the document still read: a number beyond `f64` (`1e400`: [`JsonDoc::as_f64`] says `None`,
//! never an infinity) and a string with a lone surrogate escape (`"\ud800"`: `as_str` says
//! `None`; as a key, its object has no [`Json::members`]). The fuzz target `collect_json`
//! (`shell-linux/fuzz`) checks this parity, both ways.
//!
//! The collectors' point builders are generic over [`JsonDoc`], so their parity tests still feed
//! them `serde_json::Value`s (the impl for those exists only in tests).

use std::borrow::Cow;

use chouette_core::wire::json::{JsonStr, Scanner, Token};

/// What the collectors ask of a JSON value.
pub trait JsonDoc: Sized {
    /// The member `key` of an object (`None` if not an object or no such member).
    fn get(&self, key: &str) -> Option<Self>;
    /// The text of a string.
    fn as_str(&self) -> Option<Cow<'_, str>>;
    /// The value of a number (finite: `None` for one beyond `f64`'s range).
    fn as_f64(&self) -> Option<f64>;
    /// The elements of an array (`None` if not an array).
    fn elements(&self) -> Option<Vec<Self>>;
}

/// One checked JSON value's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Json<'a> {
    text: &'a str,
}

impl<'a> Json<'a> {
    /// Checks a whole document (UTF-8, syntax, no non-finite numbers, nothing after it).
    pub fn parse(input: &'a [u8]) -> Result<Json<'a>, String> {
        let mut sc = Scanner::new(input).map_err(|e| e.to_string())?;
        let mut started = false;
        loop {
            if started {
                if sc.depth() == 0 {
                    break;
                }
                let more = if sc.in_object() {
                    sc.next_key().map_err(|e| e.to_string())?.is_some()
                } else {
                    sc.next_element().map_err(|e| e.to_string())?
                };
                if !more {
                    continue;
                }
            }
            started = true;
            let at = sc.offset();
            if let Token::NonFinite(_) = sc.value().map_err(|e| e.to_string())? {
                return Err(format!("NaN or Infinity is not JSON, near byte {at}"));
            }
        }
        sc.finish().map_err(|e| e.to_string())?;
        Ok(Json { text: sc.text().trim_matches([' ', '\n', '\r', '\t']) })
    }

    /// The value's text as written, without surrounding whitespace (`{"a": 1}`, `"x"`, `12`).
    pub fn raw(&self) -> &'a str {
        self.text
    }

    /// The value's first token, on a scanner positioned inside it.
    fn open(&self) -> Option<(Scanner<'a>, Token<'a>)> {
        let mut sc = Scanner::from_str(self.text);
        let token = sc.value().ok()?;
        Some((sc, token))
    }

    /// The members of an object, in order (repeated keys included).
    pub fn members(&self) -> Option<Vec<(Cow<'a, str>, Json<'a>)>> {
        let (mut sc, Token::ObjectStart) = self.open()? else { return None };
        let mut out = Vec::new();
        while let Some(key) = sc.next_key().ok()? {
            let value = sc.raw_value().ok()?.trim_start_matches([' ', '\n', '\r', '\t']);
            out.push((decode(&key)?, Json { text: value }));
        }
        Some(out)
    }
}

fn decode<'a>(s: &JsonStr<'a>) -> Option<Cow<'a, str>> {
    if let Some(text) = s.borrowed() {
        return Some(Cow::Borrowed(text));
    }
    let mut buf = vec![0u8; s.decoded_len_bound()];
    let n = s.decode_into(&mut buf).ok()?;
    buf.truncate(n);
    String::from_utf8(buf).ok().map(Cow::Owned)
}

impl JsonDoc for Json<'_> {
    fn get(&self, key: &str) -> Option<Self> {
        let (mut sc, Token::ObjectStart) = self.open()? else { return None };
        let mut found = None;
        while let Some(k) = sc.next_key().ok()? {
            let matches = match k.borrowed() {
                Some(raw) => raw == key,
                None => decode(&k).is_some_and(|d| d == key),
            };
            let value = sc.raw_value().ok()?;
            if matches {
                // Last one wins, as in serde_json's map.
                found = Some(Json { text: value.trim_start_matches([' ', '\n', '\r', '\t']) });
            }
        }
        found
    }

    fn as_str(&self) -> Option<Cow<'_, str>> {
        match self.open()? {
            (_, Token::Str(s)) => decode(&s),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self.open()? {
            (_, Token::Number(n)) => n.parse().ok().filter(|n: &f64| n.is_finite()),
            _ => None,
        }
    }

    fn elements(&self) -> Option<Vec<Self>> {
        let (mut sc, Token::ArrayStart) = self.open()? else { return None };
        let mut out = Vec::new();
        while sc.next_element().ok()? {
            out.push(Json { text: sc.raw_value().ok()?.trim_start_matches([' ', '\n', '\r', '\t']) });
        }
        Some(out)
    }
}

#[cfg(test)]
impl JsonDoc for &serde_json::Value {
    fn get(&self, key: &str) -> Option<Self> {
        serde_json::Value::get(self, key)
    }

    fn as_str(&self) -> Option<Cow<'_, str>> {
        serde_json::Value::as_str(self).map(Cow::Borrowed)
    }

    fn as_f64(&self) -> Option<f64> {
        serde_json::Value::as_f64(self)
    }

    fn elements(&self) -> Option<Vec<Self>> {
        serde_json::Value::as_array(self).map(|a| a.iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value read as a number and as a string.
    type Read = (Option<f64>, Option<String>);

    /// The same lookups through serde_json's `Value` and through [`Json`], on one text.
    fn both(text: &str, path: &[&str]) -> (Read, Read) {
        let value: serde_json::Value = serde_json::from_str(text).expect("serde_json");
        let mut v = Some(&value);
        let mut j = Some(Json::parse(text.as_bytes()).expect("json"));
        for key in path {
            v = v.and_then(|v| JsonDoc::get(&v, key));
            j = j.and_then(|j| j.get(key));
        }
        let look = |f: Option<f64>, s: Option<Cow<'_, str>>| (f, s.map(|s| s.into_owned()));
        (
            v.map_or((None, None), |v| look(JsonDoc::as_f64(&v), JsonDoc::as_str(&v))),
            j.map_or((None, None), |j| look(j.as_f64(), j.as_str())),
        )
    }

    #[test]
    fn lookups_agree_with_serde_json() {
        let text = r#" {"a": {"b": [1, 2], "c": {"d": 12345678901234567890, "e": -1.5e-3}},
            "s": "caf\u00e9 \"x\"", "k\u0065y": 7, "dup": 1, "dup": 2, "n": null, "t": true} "#;
        for path in [
            &["a", "c", "d"][..],
            &["a", "c", "e"],
            &["s"],
            &["key"],
            &["dup"],
            &["n"],
            &["t"],
            &["a", "b"],
            &["a", "missing"],
            &["s", "x"],
            &[],
        ] {
            let (serde, ours) = both(text, path);
            assert_eq!(ours, serde, "{path:?}");
        }
        let (_, ours) = both(text, &["dup"]);
        assert_eq!(ours, (Some(2.0), None));
        let (_, ours) = both(text, &["s"]);
        assert_eq!(ours, (None, Some("café \"x\"".to_owned())));
    }

    #[test]
    fn arrays_and_members() {
        let doc = Json::parse(br#"[{"Id": "a"}, {"Id": "b"}, 3]"#).expect("json");
        let ids: Vec<_> = doc
            .elements()
            .expect("array")
            .iter()
            .filter_map(|c| Some(c.get("Id")?.as_str()?.into_owned()))
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(doc.get("Id"), None);
        let doc = Json::parse(br#"{"x": [1], "y\n": {}}"#).expect("json");
        let keys: Vec<_> = doc.members().expect("object").into_iter().map(|(k, _)| k.into_owned()).collect();
        assert_eq!(keys, ["x", "y\n"]);
        assert_eq!(Json::parse(b"[]").expect("json").elements(), Some(vec![]));
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for bad in [
            &b"not json"[..],
            b"",
            b"{\"a\": 1",
            b"{\"a\": NaN}",
            b"[Infinity]",
            b"[-Infinity]",
            b"1 2",
            b"[1,]",
        ] {
            assert!(serde_json::from_slice::<serde_json::Value>(bad).is_err(), "serde_json takes {bad:?}");
            assert!(Json::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// Found writing the fuzz target `collect_json` (its parity check with serde_json): `1e400`
    /// read as an infinity, where serde_json refuses the document. Such a value now reads as nothing, and the rest of
    /// the document is still read (as a lone surrogate in a string).
    #[test]
    fn what_serde_json_refuses_alone_reads_as_nothing() {
        let text = br#"{"big": 1e400, "small": -1e400, "odd": "\ud800", "ok": 2}"#;
        assert!(serde_json::from_slice::<serde_json::Value>(text).is_err());
        let doc = Json::parse(text).expect("json");
        assert_eq!(doc.get("big").map(|v| v.as_f64()), Some(None));
        assert_eq!(doc.get("small").map(|v| v.as_f64()), Some(None));
        assert_eq!(doc.get("odd").map(|v| v.as_str().is_none()), Some(true));
        assert_eq!(doc.get("ok").and_then(|v| v.as_f64()), Some(2.0));
    }
}
