//! Small allocation-free number parsers shared by the modules.

/// Parses an unsigned decimal integer made only of ASCII digits (no sign, no spaces).
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// As [`parse_u64`], into a `u32`.
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    parse_u64(s).and_then(|v| u32::try_from(v).ok())
}

/// Parses an optionally signed decimal integer.
pub(crate) fn parse_i64(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = i64::try_from(parse_u64(digits)?).ok()?;
    Some(if neg { -v } else { v })
}

/// Parses `-?digits[.digits]` into thousandths, truncating digits past the third decimal.
pub(crate) fn parse_milli(s: &str) -> Option<i32> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let int_v = if int.is_empty() { 0 } else { parse_u64(int)? };
    if body.contains('.') && frac.is_empty() && int.is_empty() {
        return None;
    }
    let mut frac_v: u64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        if i < 3 {
            frac_v = frac_v * 10 + u64::from(b - b'0');
        }
    }
    for _ in frac.len()..3 {
        frac_v *= 10;
    }
    let total = int_v.checked_mul(1000)?.checked_add(frac_v)?;
    let total = i32::try_from(total).ok()?;
    Some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli() {
        assert_eq!(parse_milli("45.812"), Some(45812));
        assert_eq!(parse_milli("36.9"), Some(36900));
        assert_eq!(parse_milli("-256"), Some(-256000));
        assert_eq!(parse_milli("1.23456"), Some(1234));
        assert_eq!(parse_milli("-0.5"), Some(-500));
        assert_eq!(parse_milli("45.5.5"), None);
        assert_eq!(parse_milli(""), None);
        assert_eq!(parse_milli("."), None);
        assert_eq!(parse_milli("99999999999"), None);
    }

    #[test]
    fn ints() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("18446744073709551616"), None);
        assert_eq!(parse_i64("-62"), Some(-62));
        assert_eq!(parse_u32("12a"), None);
    }
}
