//! Go-style duration strings (`5m`, `1m30s`, `1.5h`, `500ms`): parsing and formatting.
//!
//! The config file keeps the seed's duration syntax, which is Go's
//! `time.ParseDuration`, restricted to non-negative values. A bare number is an
//! error (Go agrees) because `check_interval: 30` is ambiguous.

use std::fmt;
use std::time::Duration;

/// Largest duration Go can represent (`i64::MAX` nanoseconds, about 292 years);
/// anything larger is reported as an overflow, as Go does.
const MAX_NANOS: u128 = i64::MAX as u128;

/// The units Go accepts, with their length in nanoseconds. `µs` is written both
/// with U+00B5 (micro sign) and U+03BC (Greek mu), like Go.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Why a duration string was rejected; `Display` gives the whole message,
/// e.g. `invalid duration "5x": unknown unit "x" (use ns, us, ms, s, m, h)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    kind: DurationErrorKind,
}

/// The reason a duration string was rejected, for callers that branch on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationErrorKind {
    /// The string is empty.
    Empty,
    /// A number without a unit (`"30"`, `"1m30"`).
    MissingUnit,
    /// A unit Go does not know (`"5x"`, `"5 m"`, `"1day"`); carries the unit.
    UnknownUnit(String),
    /// A leading `-`: durations in this config are never negative.
    Negative,
    /// More than Go's maximum (about 292 years).
    Overflow,
    /// Not a number where one was expected (`"s"`, `"."`, `"1..5s"`).
    Malformed,
}

impl DurationError {
    /// Which rule the input broke.
    pub fn kind(&self) -> &DurationErrorKind {
        &self.kind
    }

    /// The rejected input, as written.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid duration {:?}: ", self.input)?;
        match &self.kind {
            DurationErrorKind::Empty => write!(f, "empty (e.g. \"30s\")"),
            DurationErrorKind::MissingUnit => write!(f, "missing unit (e.g. \"{}s\")", self.input),
            DurationErrorKind::UnknownUnit(u) => {
                write!(f, "unknown unit {u:?} (use ns, us, ms, s, m, h)")
            }
            DurationErrorKind::Negative => write!(f, "must not be negative"),
            DurationErrorKind::Overflow => write!(f, "too large (at most about 292 years)"),
            DurationErrorKind::Malformed => {
                write!(f, "expected a number followed by a unit, e.g. \"1m30s\"")
            }
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses a Go duration string (`"5m"`, `"1m30s"`, `"1.5h"`, `"100µs"`, `"0"`).
///
/// Semantics follow Go's `time.ParseDuration` for non-negative values: a
/// sequence of decimal numbers (optional fraction) each followed by a unit;
/// `"0"` alone needs no unit; a leading `+` is allowed; fractions are truncated
/// to whole nanoseconds.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let fail = |kind| DurationError {
        input: s.to_string(),
        kind,
    };
    let mut rest = s;
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    } else if rest.starts_with('-') {
        return Err(fail(DurationErrorKind::Negative));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(fail(if s.is_empty() {
            DurationErrorKind::Empty
        } else {
            DurationErrorKind::Malformed
        }));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // Integer part.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after) = rest.split_at(int_len);
        rest = after;
        // Fraction part.
        let mut frac_digits = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            (frac_digits, rest) = after_dot.split_at(frac_len);
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(fail(DurationErrorKind::Malformed));
        }
        // Unit: everything up to the next digit or dot, as in Go.
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, after) = rest.split_at(unit_len);
        rest = after;
        if unit.is_empty() {
            return Err(fail(DurationErrorKind::MissingUnit));
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(fail(DurationErrorKind::UnknownUnit(unit.to_string())));
        };
        let int = parse_digits(int_digits).ok_or_else(|| fail(DurationErrorKind::Overflow))?;
        let mut part = int
            .checked_mul(scale)
            .ok_or_else(|| fail(DurationErrorKind::Overflow))?;
        // Digits beyond 1e-20 cannot change a nanosecond count; Go drops them too.
        let frac_digits = &frac_digits[..frac_digits.len().min(20)];
        if !frac_digits.is_empty() {
            // At most 20 digits: always fits in a u128.
            let frac: u128 = frac_digits.parse().unwrap_or(0);
            let denom = 10u128.pow(frac_digits.len() as u32);
            part += frac * scale / denom;
        }
        total = total.saturating_add(part);
        if total > MAX_NANOS {
            return Err(fail(DurationErrorKind::Overflow));
        }
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Decimal digits to a number; `None` when it cannot fit (treated as overflow).
fn parse_digits(digits: &str) -> Option<u128> {
    if digits.is_empty() {
        return Some(0);
    }
    let v: u128 = digits.parse().ok()?;
    (v <= MAX_NANOS).then_some(v)
}

/// Formats a duration the way people write them in config: `5m`, `1m30s`,
/// `1h0m5s` becomes `1h5s`, `500ms`, `1.5s`, `0s`. The result always parses
/// back to the same value with [`parse_duration`].
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if secs == 0 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
    } else if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn go_accepted_forms() {
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("5s", Duration::from_secs(5)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1m30s", Duration::from_secs(90)),
            ("2h45m", Duration::from_secs(2 * 3600 + 45 * 60)),
            ("1.5h", Duration::from_secs(5400)),
            ("500ms", ms(500)),
            ("1.004s", ms(1004)),
            ("1.0040s", ms(1004)),
            (".5s", ms(500)),
            ("5.s", Duration::from_secs(5)),
            ("100us", Duration::from_micros(100)),
            ("100\u{b5}s", Duration::from_micros(100)),
            ("100\u{3bc}s", Duration::from_micros(100)),
            ("10ns", Duration::from_nanos(10)),
            ("1h1m1s1ms1us1ns", Duration::new(3661, 1_001_001)),
            ("+5s", Duration::from_secs(5)),
            ("2000000h", Duration::from_secs(2_000_000 * 3600)),
            // Go truncates sub-nanosecond fractions.
            ("0.9999999999s", Duration::new(0, 999_999_999)),
            ("1.00000000000000000000000000001s", Duration::from_secs(1)),
            // The largest value Go accepts.
            (
                "9223372036854775807ns",
                Duration::new(9_223_372_036, 854_775_807),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).as_ref(), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn go_rejected_forms_say_why() {
        use DurationErrorKind::*;
        let cases: &[(&str, DurationErrorKind)] = &[
            ("", Empty),
            ("5", MissingUnit),
            ("30", MissingUnit),
            ("1m30", MissingUnit),
            ("1.5", MissingUnit),
            ("-1s", Negative),
            ("-0", Negative),
            ("1x", UnknownUnit("x".into())),
            ("5 m", UnknownUnit(" m".into())),
            ("1day", UnknownUnit("day".into())),
            ("5M", UnknownUnit("M".into())),
            ("s", Malformed),
            (".s", Malformed),
            ("+", Malformed),
            ("1s.", Malformed),
            ("9223372036854775808ns", Overflow),
            ("2562048h", Overflow),
            ("99999999999999999999999999999999999999999h", Overflow),
        ];
        for (input, want) in cases {
            let err = parse_duration(input).expect_err(input);
            assert_eq!(err.kind(), want, "input {input:?}");
            assert_eq!(err.input(), *input);
        }
    }

    #[test]
    fn error_messages_tell_the_user_what_to_write() {
        let msg = |s| parse_duration(s).expect_err(s).to_string();
        assert_eq!(
            msg("5x"),
            r#"invalid duration "5x": unknown unit "x" (use ns, us, ms, s, m, h)"#
        );
        assert_eq!(
            msg("30"),
            r#"invalid duration "30": missing unit (e.g. "30s")"#
        );
        assert_eq!(
            msg("-1s"),
            r#"invalid duration "-1s": must not be negative"#
        );
    }

    #[test]
    fn formatting_is_short_and_round_trips() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3605), "1h5s"),
            (Duration::from_secs(24 * 3600), "24h"),
            (ms(500), "500ms"),
            (ms(1500), "1.5s"),
            (Duration::from_micros(100), "100us"),
            (Duration::from_nanos(10), "10ns"),
            (Duration::new(61, 1), "1m1.000000001s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_duration(*d), *want);
            assert_eq!(parse_duration(want), Ok(*d), "round trip of {want}");
        }
    }

    #[test]
    fn every_representable_shape_round_trips() {
        // A spread of values across all unit boundaries.
        let mut v: u64 = 1;
        while v < i64::MAX as u64 / 3 {
            let d = Duration::from_nanos(v);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{v}ns");
            v = v * 3 + 7;
        }
    }
}
