//! Sanitizing metric names and tag keys, so what the app writes is what the backend keeps.

use std::borrow::Cow;

/// How metric names and tag keys are rewritten before they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SanitizeMode {
    /// Written as given (the original client's behaviour).
    #[default]
    None,
    /// Datadog's rules (datadog-api.md §1.4). Names: ASCII letters, digits, `_` and `.`, anything
    /// else becomes `_`, leading characters that are not letters are removed, at most 200 bytes.
    /// Tag keys: lower-cased; letters, digits, `_`, `-`, `.`, `/` kept, anything else becomes `_`;
    /// at most 200 bytes.
    Datadog,
    /// Prometheus' rules: `[a-zA-Z_:][a-zA-Z0-9_:]*` for names (dots and every other character
    /// become `_`, a leading digit gets a `_` in front), `[a-zA-Z_][a-zA-Z0-9_]*` for tag keys.
    Prometheus,
}

const DATADOG_MAX_BYTES: usize = 200;

impl SanitizeMode {
    /// Parses `none`, `datadog` or `prometheus`, any case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Some(SanitizeMode::None),
            "datadog" => Some(SanitizeMode::Datadog),
            "prometheus" => Some(SanitizeMode::Prometheus),
            _ => None,
        }
    }

    /// The metric name as stored. Borrows when nothing changes (no allocation).
    pub fn name<'a>(self, name: &'a str) -> Cow<'a, str> {
        match self {
            SanitizeMode::None => Cow::Borrowed(name),
            SanitizeMode::Datadog => {
                let trimmed = name.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
                let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
                rewrite(trimmed, DATADOG_MAX_BYTES, ok, false)
            }
            SanitizeMode::Prometheus => prometheus(name, true),
        }
    }

    /// The tag key as stored. Borrows when nothing changes (no allocation).
    pub fn tag_key<'a>(self, key: &'a str) -> Cow<'a, str> {
        match self {
            SanitizeMode::None => Cow::Borrowed(key),
            SanitizeMode::Datadog => {
                let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/');
                rewrite(key, DATADOG_MAX_BYTES, ok, true)
            }
            SanitizeMode::Prometheus => prometheus(key, false),
        }
    }
}

fn rewrite(text: &str, max: usize, ok: impl Fn(char) -> bool, lower: bool) -> Cow<'_, str> {
    let clean = text.len() <= max && text.chars().all(|c| ok(c) && !(lower && c.is_ascii_uppercase()));
    if clean {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if ok(c) { c } else { '_' };
        let c = if lower { c.to_ascii_lowercase() } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

fn prometheus(text: &str, colon: bool) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
    let leading_digit = text.starts_with(|c: char| c.is_ascii_digit());
    if !leading_digit && !text.is_empty() && text.chars().all(ok) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 1);
    if leading_digit || text.is_empty() {
        out.push('_');
    }
    out.extend(text.chars().map(|c| if ok(c) { c } else { '_' }));
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_keeps_everything() {
        assert_eq!(SanitizeMode::None.name("a b/ü"), "a b/ü");
        assert!(matches!(SanitizeMode::None.tag_key("K"), Cow::Borrowed(_)));
    }

    #[test]
    fn datadog_rules() {
        let d = SanitizeMode::Datadog;
        assert!(matches!(d.name("app.req_total"), Cow::Borrowed(_)));
        assert_eq!(d.name("9app.req-total ms"), "app.req_total_ms");
        assert_eq!(d.name("app.é"), "app._");
        assert_eq!(d.name(&"a".repeat(300)).len(), 200);
        assert_eq!(d.tag_key("Env Name"), "env_name");
        assert_eq!(d.tag_key("k8s/pod-name.x"), "k8s/pod-name.x");
        assert_eq!(d.tag_key("a:b"), "a_b");
    }

    #[test]
    fn prometheus_rules() {
        let p = SanitizeMode::Prometheus;
        assert!(matches!(p.name("http_requests:total"), Cow::Borrowed(_)));
        assert_eq!(p.name("app.req.latency"), "app_req_latency");
        assert_eq!(p.name("9lives"), "_9lives");
        assert_eq!(p.tag_key("a:b.c"), "a_b_c");
        assert_eq!(p.tag_key(""), "_");
    }

    #[test]
    fn modes_parse_in_any_case() {
        assert_eq!(SanitizeMode::parse("DataDog"), Some(SanitizeMode::Datadog));
        assert_eq!(SanitizeMode::parse("PROMETHEUS"), Some(SanitizeMode::Prometheus));
        assert_eq!(SanitizeMode::parse("none"), Some(SanitizeMode::None));
        assert_eq!(SanitizeMode::parse("statsd"), None);
    }
}
