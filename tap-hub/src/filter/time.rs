//! Durations (`"1h30m"`, Go's and CEL's notation) and RFC 3339 timestamps as
//! nanoseconds: the filter compares them with `ts_ns` without a date library.

const NS_PER_S: i128 = 1_000_000_000;

/// `"1h30m"`, `"-1.5s"`, `"250ms"`, `"0"` as nanoseconds.
pub(super) fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = |why: &str| format!("invalid duration '{s}': {why}");
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad("expected a number and a unit, as in 5m or 1h30m"));
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad("expected a number"));
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let per_unit: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NS_PER_S,
            "m" => 60 * NS_PER_S,
            "h" => 3600 * NS_PER_S,
            "" => return Err(bad("missing unit (h, m, s, ms, us, ns)")),
            _ => return Err(bad(&format!("unknown unit '{unit}' (h, m, s, ms, us, ns)"))),
        };
        let int: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad("number too large"))?
        };
        let mut frac: i128 = 0;
        let mut scale: i128 = 1;
        // Digits past nanoseconds cannot change the result.
        for d in frac_part.bytes().take(18) {
            frac = frac * 10 + i128::from(d - b'0');
            scale *= 10;
        }
        total = int
            .checked_mul(per_unit)
            .and_then(|t| t.checked_add(frac * per_unit / scale))
            .and_then(|t| t.checked_add(total))
            .filter(|t| *t <= i128::from(i64::MAX) + 1)
            .ok_or_else(|| bad("too long"))?;
        rest = after;
    }
    let total = if negative { -total } else { total };
    i64::try_from(total).map_err(|_| bad("too long"))
}

/// `"2026-11-24T19:36:50.123Z"`, `"2026-11-24T20:36:50+01:00"` as nanoseconds
/// since the Unix epoch.
pub(super) fn parse_timestamp(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid timestamp '{s}': expected RFC 3339, as in 2026-11-24T19:36:50Z");
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let digits = b.get(from..from + len).ok_or_else(bad)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(digits
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, allowed: &[u8]| -> Result<(), String> {
        match b.get(at) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(bad()),
        }
    };
    let year = num(0, 4)?;
    sep(4, b"-")?;
    let month = num(5, 2)?;
    sep(7, b"-")?;
    let day = num(8, 2)?;
    sep(10, b"Tt ")?;
    let hour = num(11, 2)?;
    sep(13, b":")?;
    let minute = num(14, 2)?;
    sep(16, b":")?;
    let second = num(17, 2)?;
    let mut i = 19;
    let mut nanos = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let n = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(bad());
        }
        for k in 0..9 {
            let d = if k < n { i64::from(b[i + k] - b'0') } else { 0 };
            nanos = nanos * 10 + d;
        }
        i += n;
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            sep(i + 3, b":")?;
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let off = h * 3600 + m * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    i64::try_from(i128::from(secs) * NS_PER_S + i128::from(nanos))
        .map_err(|_| format!("timestamp '{s}' is out of range (years 1678 to 2261)"))
}

/// RFC 3339 in UTC, with nanoseconds when there are any.
pub(super) fn format_timestamp(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    let (hh, mm, ss) = (tod / 3600, tod / 60 % 60, tod % 60);
    if nanos == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{nanos:09}Z")
    }
}

/// CEL's string form of a duration: seconds, as in `"300s"` or `"1.5s"`.
pub(super) fn format_duration(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let abs = ns.unsigned_abs();
    let (secs, frac) = (abs / 1_000_000_000, abs % 1_000_000_000);
    if frac == 0 {
        format!("{sign}{secs}s")
    } else {
        let frac = format!("{frac:09}");
        format!("{sign}{secs}.{}s", frac.trim_end_matches('0'))
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_go_notation() {
        let s = 1_000_000_000i64;
        for (text, ns) in [
            ("5m", 300 * s),
            ("1h30m", 5400 * s),
            ("1.5s", 1_500_000_000),
            ("-2s", -2 * s),
            ("+2s", 2 * s),
            ("250ms", 250_000_000),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("7ns", 7),
            (".5s", 500_000_000),
            ("0", 0),
            ("1h1m1s1ms1us1ns", 3_661_001_001_001),
        ] {
            assert_eq!(parse_duration(text), Ok(ns), "{text}");
        }
        for text in ["", "5", "5x", "m", "1.s5", "-", "99999999999h", "1d", "1 m"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn timestamps_in_rfc3339() {
        let t = parse_timestamp("2026-11-20T19:36:50.123456789Z").unwrap();
        assert_eq!(t, 1_795_203_410_123_456_789);
        assert_eq!(
            parse_timestamp("2026-11-20T20:36:50.123456789+01:00"),
            Ok(t)
        );
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59Z"), Ok(-1_000_000_000));
        assert!(parse_timestamp("2024-02-29T00:00:00Z").is_ok());
        for text in [
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-20T19:36:50",
            "2026-11-20",
            "2026-11-20T19:36:50.Z",
            "2026-11-20T24:00:00Z",
            "9999-11-20T00:00:00Z",
            "2026-11-20T19:36:50Zjunk",
            "é",
        ] {
            assert!(parse_timestamp(text).is_err(), "{text}");
        }
        assert_eq!(format_timestamp(t), "2026-11-20T19:36:50.123456789Z");
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_duration(1_500_000_000), "1.5s");
        assert_eq!(format_duration(-300_000_000_000), "-300s");
    }
}
