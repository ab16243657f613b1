//! PostgreSQL's date and time text where DataFusion's (Arrow's) differs: the input forms of
//! `date`, `timestamp` and `timestamptz` ([`parse`]: no seconds, a `T`, zone offsets,
//! `epoch`, `now`, `today`, ...) and the template patterns of `to_char` ([`to_char`]:
//! `YYYY-MM-DD HH24:MI:SS`, `FMMonth`, `Dy`, `DDth`, ...). Column coercion (`crate::types`)
//! and the cast and function rewrites of a plan (`plan::datetime`) call them. Values are
//! microseconds since 1970-01-01 00:00 UTC; the session time zone is UTC.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike, Utc};
use datafusion::arrow::array::{ArrayRef, AsArray, TimestampMicrosecondArray};
use datafusion::arrow::compute::{cast, cast_with_options, CastOptions};
use datafusion::arrow::datatypes::DataType;
use raftable_common::{Error, Result};

const MICROS: i64 = 1_000_000;

/// The type a text is read as: it names the type in messages and says what a zone offset
/// means.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Kind {
    Date,
    Timestamp,
    TimestampTz,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Date => "date",
            Kind::Timestamp => "timestamp",
            Kind::TimestampTz => "timestamp with time zone",
        }
    }
}

/// `text` read as `kind`, in microseconds since the epoch (a date: its midnight). A zone
/// offset moves a timestamptz to UTC and is ignored by a timestamp or a date, as in
/// PostgreSQL; a date ignores a time of day.
pub(crate) fn parse(text: &str, kind: Kind) -> Result<i64> {
    let s = text.trim();
    let invalid = || Error::InvalidDatetime(format!("invalid input syntax for type {}: \"{text}\"", kind.name()));
    let out_of_range = || Error::DatetimeOutOfRange(format!("date/time field value out of range: \"{text}\""));
    let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN).and_utc().timestamp_micros();
    if !s.starts_with(|c: char| c.is_ascii_digit()) {
        // A special word (the clock is read only here: not once per value of a column).
        let today = || Utc::now().date_naive();
        match s.to_ascii_lowercase().as_str() {
            "epoch" => return Ok(0),
            "now" if kind != Kind::Date => return Ok(Utc::now().timestamp_micros()),
            "now" | "today" => return Ok(midnight(today())),
            "tomorrow" => return today().succ_opt().map(midnight).ok_or_else(out_of_range),
            "yesterday" => return today().pred_opt().map(midnight).ok_or_else(out_of_range),
            "infinity" | "+infinity" | "-infinity" => {
                return Err(Error::unsupported(format!("{} '{s}' is not supported", kind.name())))
            }
            _ => {}
        }
    }
    let mut p = Cursor { bytes: s.as_bytes(), at: 0 };
    let year = p.number(1, 7).ok_or_else(invalid)?;
    let month = p.after(b'-').and_then(|p| p.number(1, 2)).ok_or_else(invalid)?;
    let day = p.after(b'-').and_then(|p| p.number(1, 2)).ok_or_else(invalid)?;
    let date = NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32).ok_or_else(out_of_range)?;
    let mut time = 0;
    let mut offset = 0;
    if !p.done() {
        let separated = p.eat(b'T') || p.eat(b't') || p.spaces() > 0;
        if !separated {
            return Err(invalid());
        }
        if p.peek().is_some_and(|b| b.is_ascii_digit()) {
            time = p.time_of_day().ok_or_else(invalid)?.ok_or_else(out_of_range)?;
            p.spaces();
        }
        if !p.done() {
            offset = p.zone().ok_or_else(invalid)?;
            p.spaces();
        }
        if !p.done() {
            return Err(invalid());
        }
    }
    Ok(match kind {
        Kind::Date => midnight(date),
        Kind::Timestamp => midnight(date) + time,
        Kind::TimestampTz => midnight(date) + time - offset * MICROS,
    })
}

/// Text values (`Utf8`) read as `kind` ([`parse`]) and converted to `target` (a timestamp of
/// any unit, or a date); NULL stays NULL.
pub(crate) fn parse_array(values: &ArrayRef, kind: Kind, target: &DataType) -> Result<ArrayRef> {
    let text = cast(values, &DataType::Utf8).map_err(|e| Error::Internal(e.to_string()))?;
    let parsed: TimestampMicrosecondArray =
        text.as_string::<i32>().iter().map(|v| v.map(|v| parse(v, kind)).transpose()).collect::<Result<_>>()?;
    let parsed = match target {
        DataType::Timestamp(_, Some(tz)) => parsed.with_timezone(tz.clone()),
        _ => parsed,
    };
    let parsed: ArrayRef = Arc::new(parsed);
    if parsed.data_type() == target {
        return Ok(parsed);
    }
    let options = CastOptions { safe: false, ..Default::default() };
    cast_with_options(&parsed, target, &options)
        .map_err(|e| Error::DatetimeOutOfRange(format!("{} out of range: {e}", kind.name())))
}

/// A parse position in the text of a date or time.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let matched = self.peek() == Some(b);
        self.at += usize::from(matched);
        matched
    }

    /// Itself past `b`, if `b` is next.
    fn after(&mut self, b: u8) -> Option<&mut Self> {
        self.eat(b).then_some(self)
    }

    fn spaces(&mut self) -> usize {
        let start = self.at;
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
        self.at - start
    }

    /// A run of `min..=max` digits.
    fn number(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.at;
        while self.at - start < max && self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        let digits = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
        (digits.len() >= min).then(|| digits.parse().ok())?
    }

    /// `HH:MM[:SS[.fraction]]` in microseconds since midnight: None if it does not parse,
    /// Some(None) if a field is out of range. The fraction is rounded to microseconds.
    fn time_of_day(&mut self) -> Option<Option<i64>> {
        let hour = self.number(1, 2)?;
        let minute = self.after(b':')?.number(2, 2)?;
        let (mut second, mut micros) = (0, 0);
        if self.eat(b':') {
            second = self.number(2, 2)?;
            if self.eat(b'.') {
                let start = self.at;
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    self.at += 1;
                }
                let digits = &self.bytes[start..self.at];
                let digit = |i: usize| digits.get(i).map_or(0, |d| i64::from(d - b'0'));
                micros = (0..6).fold(0, |acc, i| acc * 10 + digit(i)) + i64::from(digit(6) >= 5);
            }
        }
        let total = ((hour * 60 + minute) * 60 + second) * MICROS + micros;
        let valid = minute < 60 && second <= 60 && total <= 24 * 3600 * MICROS;
        Some(valid.then_some(total))
    }

    /// A zone: `Z`, `UTC`, `GMT`, or `+HH[[:]MM]`; its offset east of UTC in seconds.
    fn zone(&mut self) -> Option<i64> {
        let rest = std::str::from_utf8(&self.bytes[self.at..]).ok()?;
        for name in ["utc", "gmt", "z"] {
            if rest.len() >= name.len() && rest[..name.len()].eq_ignore_ascii_case(name) {
                self.at += name.len();
                return Some(0);
            }
        }
        let sign = match self.peek()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.at += 1;
        let digits_start = self.at;
        let hours = self.number(1, 2)?;
        // `+05:30`, or `+0530` (two hour digits, then the minutes').
        let four_digits = self.at - digits_start == 2 && self.peek().is_some_and(|b| b.is_ascii_digit());
        let minutes = if self.eat(b':') || four_digits { self.number(2, 2)? } else { 0 };
        (hours <= 15 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
    }
}

/// `to_char(value, template)` for a timestamp or date (`micros` since the epoch), with
/// PostgreSQL's template patterns; anything else in the template is copied, `"text"` and
/// `\x` literally. `with_zone`: a timestamptz (`TZ` is `UTC`, `OF` `+00`).
pub(crate) fn to_char(micros: i64, template: &str, with_zone: bool) -> Result<String> {
    let t = DateTime::<Utc>::from_timestamp_micros(micros)
        .ok_or_else(|| Error::DatetimeOutOfRange(format!("timestamp out of range: {micros}")))?
        .naive_utc();
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            let body = &rest[1..];
            let end = body.find('"').unwrap_or(body.len());
            out.push_str(&body[..end].replace("\\\"", "\""));
            rest = body.get(end + 1..).unwrap_or("");
            continue;
        }
        if c == '\\' {
            let next = rest[1..].chars().next();
            out.extend(next);
            rest = &rest[1 + next.map_or(0, char::len_utf8)..];
            continue;
        }
        let fill = starts_with_ci(rest, "FM");
        let body = if fill { &rest[2..] } else { rest };
        let Some(&(pattern, field)) = PATTERNS.iter().find(|(p, _)| starts_with_ci(body, p)) else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        let matched = &body[..pattern.len()];
        rest = &body[pattern.len()..];
        match field {
            Field::Number(width, value) => {
                let n = value(&t);
                let text = if fill { n.to_string() } else { format!("{n:0width$}", width = width) };
                out.push_str(&text);
                if let Some(suffix) = ["TH", "th"].into_iter().find(|s| rest.starts_with(s)) {
                    let ordinal = ordinal(n);
                    out.push_str(&if suffix == "TH" { ordinal.to_uppercase() } else { ordinal.to_string() });
                    rest = &rest[2..];
                }
            }
            Field::Name(width, value) => {
                let name = cased(value(&t), matched);
                out.push_str(&if fill { name } else { format!("{name:<width$}", width = width) });
            }
            Field::Meridiem => {
                let pm = t.hour() >= 12;
                let text = match (matched.len(), pm) {
                    (2, false) => "AM",
                    (2, true) => "PM",
                    (_, false) => "A.M.",
                    (_, true) => "P.M.",
                };
                out.push_str(&cased(text.to_string(), matched));
            }
            Field::Zone(offset) => {
                if with_zone {
                    out.push_str(&cased((if offset { "+00" } else { "UTC" }).to_string(), matched));
                }
            }
        }
    }
    Ok(out)
}

/// What a template pattern stands for.
#[derive(Clone, Copy)]
enum Field {
    /// A number, zero-padded to a width unless `FM`.
    Number(usize, fn(&chrono::NaiveDateTime) -> i64),
    /// A name, blank-padded to a width unless `FM`, cased as the pattern is.
    Name(usize, fn(&chrono::NaiveDateTime) -> String),
    /// `AM` / `PM` / `A.M.` / `P.M.`, cased as the pattern is.
    Meridiem,
    /// `TZ` (false) or `OF` (true): the zone of a timestamptz, nothing for a timestamp.
    Zone(bool),
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// The patterns, longer before their prefixes (`HH24` before `HH`, `DDD` before `DD`).
const PATTERNS: &[(&str, Field)] = &[
    ("HH24", Field::Number(2, |t| t.hour().into())),
    ("HH12", Field::Number(2, hour12)),
    ("HH", Field::Number(2, hour12)),
    ("MI", Field::Number(2, |t| t.minute().into())),
    ("SSSSS", Field::Number(1, |t| t.num_seconds_from_midnight().into())),
    ("SSSS", Field::Number(1, |t| t.num_seconds_from_midnight().into())),
    ("SS", Field::Number(2, |t| t.second().into())),
    ("MS", Field::Number(3, |t| (t.nanosecond() / 1_000_000).into())),
    ("US", Field::Number(6, |t| (t.nanosecond() / 1_000).into())),
    ("FF1", Field::Number(1, |t| (t.nanosecond() / 100_000_000).into())),
    ("FF2", Field::Number(2, |t| (t.nanosecond() / 10_000_000).into())),
    ("FF3", Field::Number(3, |t| (t.nanosecond() / 1_000_000).into())),
    ("FF4", Field::Number(4, |t| (t.nanosecond() / 100_000).into())),
    ("FF5", Field::Number(5, |t| (t.nanosecond() / 10_000).into())),
    ("FF6", Field::Number(6, |t| (t.nanosecond() / 1_000).into())),
    ("A.M.", Field::Meridiem),
    ("P.M.", Field::Meridiem),
    ("AM", Field::Meridiem),
    ("PM", Field::Meridiem),
    ("YYYY", Field::Number(4, |t| t.year().into())),
    ("YYY", Field::Number(3, |t| (t.year() % 1000).into())),
    ("YY", Field::Number(2, |t| (t.year() % 100).into())),
    ("Y", Field::Number(1, |t| (t.year() % 10).into())),
    ("IYYY", Field::Number(4, |t| t.iso_week().year().into())),
    ("IW", Field::Number(2, |t| t.iso_week().week().into())),
    ("ID", Field::Number(1, |t| t.weekday().number_from_monday().into())),
    ("MONTH", Field::Name(9, |t| MONTHS[t.month0() as usize].to_string())),
    ("MON", Field::Name(3, |t| MONTHS[t.month0() as usize][..3].to_string())),
    ("MM", Field::Number(2, |t| t.month().into())),
    ("DAY", Field::Name(9, |t| DAYS[t.weekday().num_days_from_sunday() as usize].to_string())),
    ("DY", Field::Name(3, |t| DAYS[t.weekday().num_days_from_sunday() as usize][..3].to_string())),
    ("DDD", Field::Number(3, |t| t.ordinal().into())),
    ("DD", Field::Number(2, |t| t.day().into())),
    ("D", Field::Number(1, |t| t.weekday().number_from_sunday().into())),
    ("WW", Field::Number(2, |t| (t.ordinal0() / 7 + 1).into())),
    ("W", Field::Number(1, |t| (t.day0() / 7 + 1).into())),
    ("CC", Field::Number(2, |t| century(t.year()))),
    ("Q", Field::Number(1, |t| (t.month0() / 3 + 1).into())),
    ("J", Field::Number(1, |t| t.date().num_days_from_ce() as i64 + 1_721_425)),
    ("TZ", Field::Zone(false)),
    ("OF", Field::Zone(true)),
];

fn hour12(t: &chrono::NaiveDateTime) -> i64 {
    t.hour12().1.into()
}

fn century(year: i32) -> i64 {
    let year = i64::from(year);
    if year > 0 {
        (year + 99) / 100
    } else {
        -((99 - year) / 100)
    }
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// `text` cased as `pattern` is: `MONTH` upper, `Month` capitalised, `month` lower.
fn cased(text: String, pattern: &str) -> String {
    let mut letters = pattern.chars().filter(char::is_ascii_alphabetic);
    match (letters.next(), letters.next()) {
        (Some(a), Some(b)) if a.is_ascii_uppercase() && b.is_ascii_uppercase() => text.to_uppercase(),
        (Some(a), _) if a.is_ascii_uppercase() => text,
        _ => text.to_lowercase(),
    }
}

/// English ordinal suffix of `n` (`st`, `nd`, `rd`, `th`).
fn ordinal(n: i64) -> &'static str {
    match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap().and_utc().timestamp_micros()
    }

    #[test]
    fn input_forms_postgres_accepts() {
        let ten = micros("2026-01-01 10:00:00");
        for text in [
            "2026-01-01 10:00",
            "2026-01-01T10:00:00",
            "2026-1-1 10:00:00",
            " 2026-01-01  10:00 ",
            "2026-01-01 10:00:00+02",
        ] {
            assert_eq!(parse(text, Kind::Timestamp).unwrap(), ten, "{text}");
        }
        assert_eq!(parse("2026-01-01 10:00:00+02", Kind::TimestampTz).unwrap(), micros("2026-01-01 08:00:00"));
        assert_eq!(parse("2026-01-01T10:00-0530", Kind::TimestampTz).unwrap(), micros("2026-01-01 15:30:00"));
        assert_eq!(parse("2026-01-01 10:00Z", Kind::TimestampTz).unwrap(), ten);
        assert_eq!(parse("2026-01-01 10:00:00 UTC", Kind::TimestampTz).unwrap(), ten);
        assert_eq!(parse("2026-01-01 10:00:00.1234565", Kind::Timestamp).unwrap(), ten + 123_457);
        assert_eq!(parse("2026-01-01 10:00:00.5", Kind::Timestamp).unwrap(), ten + 500_000);
        assert_eq!(parse("2026-01-01", Kind::Timestamp).unwrap(), micros("2026-01-01 00:00:00"));
        assert_eq!(parse("2026-01-01 10:00", Kind::Date).unwrap(), micros("2026-01-01 00:00:00"));
        assert_eq!(parse("2026-01-01 24:00:00", Kind::Timestamp).unwrap(), micros("2026-01-02 00:00:00"));
        assert_eq!(parse("Epoch", Kind::Timestamp).unwrap(), 0);
        let today = parse("today", Kind::Date).unwrap();
        assert_eq!(parse("tomorrow", Kind::Timestamp).unwrap() - today, 86_400 * MICROS);
    }

    #[test]
    fn bad_input_is_22007_and_impossible_fields_22008() {
        for text in ["not a date", "2026-01-01 10", "2026-01-01 10:00 nonsense", "2026/01/01", "2026-01-01x10:00"] {
            assert!(matches!(parse(text, Kind::Timestamp), Err(Error::InvalidDatetime(_))), "{text}");
        }
        for text in ["2024-02-30", "2026-13-01", "2026-01-01 25:00", "2026-01-01 10:60"] {
            assert!(matches!(parse(text, Kind::Timestamp), Err(Error::DatetimeOutOfRange(_))), "{text}");
        }
        assert!(matches!(parse("infinity", Kind::Timestamp), Err(Error::Unsupported(_))));
    }

    #[test]
    fn to_char_patterns_as_postgres_prints_them() {
        let t = micros("2026-03-02 15:04:05.123456");
        let f = |template: &str| to_char(t, template, false).unwrap();
        assert_eq!(f("YYYY-MM-DD HH24:MI:SS"), "2026-03-02 15:04:05");
        assert_eq!(f("HH12:MI AM"), "03:04 PM");
        assert_eq!(f("FMHH12:MI a.m."), "3:04 p.m.");
        assert_eq!(f("Month|MONTH|month|FMMonth|Mon|mon"), "March    |MARCH    |march    |March|Mar|mar");
        assert_eq!(f("Day Dy DY FMDay"), "Monday    Mon MON Monday");
        assert_eq!(f("DDth FMDDth DDD D Q CC"), "02nd 2nd 061 2 1 21");
        assert_eq!(f("MS US FF3"), "123 123456 123");
        assert_eq!(f("\"Year\" YYYY \\Q Q"), "Year 2026 Q 1");
        assert_eq!(f("IYYY-IW-ID J"), "2026-10-1 2461102");
        assert_eq!(f("TZ"), "");
        assert_eq!(to_char(t, "HH24 TZ OF", true).unwrap(), "15 UTC +00");
        assert_eq!(to_char(micros("2026-01-11 00:00:00"), "DDth FMDDth", false).unwrap(), "11th 11th");
    }
}
