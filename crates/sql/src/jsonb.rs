//! PostgreSQL's `jsonb` values: [`Jsonb::parse`] reads JSON text as PostgreSQL's `jsonb_in`
//! does (numbers kept as the decimals they are, not floats; an object's keys deduplicated, the
//! last one kept, and ordered shorter first, then bytewise), and [`Jsonb`]'s `Display` writes
//! PostgreSQL's text of it (`{"a": 1, "b": [true, null]}`). A jsonb column stores that text
//! (`types::SqlType::coerce` normalises what is written); the operators of `plan::jsonb`
//! (`->`, `->>`, `#>`, `@>`, `?`, ...) read it with [`Jsonb::parse`] and answer with
//! [`Jsonb::field`], [`Jsonb::element`], [`Jsonb::contains`], [`Jsonb::exists`].

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use raftable_common::{Error, Result};

/// A jsonb value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Jsonb {
    Null,
    Bool(bool),
    /// A number as PostgreSQL's numeric prints it (`1e2` is `100`, `1.50` stays `1.50`).
    Number(String),
    String(String),
    Array(Vec<Jsonb>),
    /// Keys unique, in jsonb's order ([`key_order`]).
    Object(Vec<(String, Jsonb)>),
}

/// jsonb's order of an object's keys: shorter first, then bytewise.
fn key_order(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

impl Jsonb {
    /// `text` read as jsonb; 22P02 with PostgreSQL's message if it is not JSON.
    pub(crate) fn parse(text: &str) -> Result<Jsonb> {
        let mut p = Parser { text, at: 0, depth: 0 };
        p.blank();
        let value = p.value()?;
        p.blank();
        if p.at < text.len() {
            return Err(p.invalid());
        }
        Ok(value)
    }

    /// `text` as PostgreSQL's text of the jsonb it reads as (what a jsonb column stores).
    pub(crate) fn normalized(text: &str) -> Result<String> {
        Ok(Jsonb::parse(text)?.to_string())
    }

    /// The value of an object's `key` (`->`): none for another value or a missing key.
    pub(crate) fn field(&self, key: &str) -> Option<&Jsonb> {
        match self {
            Jsonb::Object(fields) => fields.binary_search_by(|(k, _)| key_order(k, key)).ok().map(|i| &fields[i].1),
            _ => None,
        }
    }

    /// An array's element `index` (`->`; negative counts from the end).
    pub(crate) fn element(&self, index: i64) -> Option<&Jsonb> {
        match self {
            Jsonb::Array(items) => {
                let len = items.len() as i64;
                let i = if index < 0 { len + index } else { index };
                usize::try_from(i).ok().and_then(|i| items.get(i))
            }
            _ => None,
        }
    }

    /// The value at `path` (`#>`): keys of objects, indexes of arrays.
    pub(crate) fn at_path<'a>(&self, path: impl IntoIterator<Item = &'a str>) -> Option<&Jsonb> {
        path.into_iter().try_fold(self, |value, step| match value {
            Jsonb::Object(_) => value.field(step),
            Jsonb::Array(_) => step.trim().parse::<i64>().ok().and_then(|i| value.element(i)),
            _ => None,
        })
    }

    /// The value as `->>` gives it: a string's own text, NULL for JSON's null, else jsonb text.
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Jsonb::Null => None,
            Jsonb::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// Whether `self @> other`, by PostgreSQL's rules: an object contains an object whose
    /// every key it has with a value containing that key's; an array contains an array whose
    /// every element some element of it contains; a scalar only an equal scalar; and, at the
    /// top level only, an array contains a scalar it holds.
    pub(crate) fn contains(&self, other: &Jsonb) -> bool {
        match (self, other) {
            (Jsonb::Array(items), scalar) if !matches!(scalar, Jsonb::Array(_) | Jsonb::Object(_)) => {
                items.iter().any(|i| i.contains_nested(scalar))
            }
            _ => self.contains_nested(other),
        }
    }

    fn contains_nested(&self, other: &Jsonb) -> bool {
        match (self, other) {
            (Jsonb::Object(_), Jsonb::Object(wanted)) => {
                wanted.iter().all(|(k, v)| self.field(k).is_some_and(|mine| mine.contains_nested(v)))
            }
            (Jsonb::Array(items), Jsonb::Array(wanted)) => {
                wanted.iter().all(|w| items.iter().any(|i| i.contains_nested(w)))
            }
            (Jsonb::Number(a), Jsonb::Number(b)) => numbers_equal(a, b),
            (a, b) => !matches!(a, Jsonb::Array(_) | Jsonb::Object(_)) && a == b,
        }
    }

    /// Whether `key` is a key of the object, an element string of the array, or the string
    /// itself (`?`).
    pub(crate) fn exists(&self, key: &str) -> bool {
        match self {
            Jsonb::Object(_) => self.field(key).is_some(),
            Jsonb::Array(items) => items.iter().any(|i| matches!(i, Jsonb::String(s) if s == key)),
            Jsonb::String(s) => s == key,
            _ => false,
        }
    }

    /// `jsonb_typeof`.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Jsonb::Null => "null",
            Jsonb::Bool(_) => "boolean",
            Jsonb::Number(_) => "number",
            Jsonb::String(_) => "string",
            Jsonb::Array(_) => "array",
            Jsonb::Object(_) => "object",
        }
    }
}

impl fmt::Display for Jsonb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Jsonb::Null => f.write_str("null"),
            Jsonb::Bool(b) => f.write_str(if *b { "true" } else { "false" }),
            Jsonb::Number(n) => f.write_str(n),
            Jsonb::String(s) => quote(f, s),
            Jsonb::Array(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Jsonb::Object(fields) => {
                f.write_char('{')?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    quote(f, k)?;
                    write!(f, ": {v}")?;
                }
                f.write_char('}')
            }
        }
    }
}

/// A JSON string literal as PostgreSQL escapes it.
fn quote(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Whether two JSON numbers are one value (`1.0` and `1`, `1e2` and `100`).
fn numbers_equal(a: &str, b: &str) -> bool {
    canonical(a) == canonical(b)
}

/// A number as (negative, significant digits, exponent): the value is `0.digits * 10^exp`.
fn canonical(n: &str) -> (bool, String, i64) {
    let (negative, n) = n.strip_prefix('-').map_or((false, n), |r| (true, r));
    let (mantissa, exp) = n.split_once(['e', 'E']).map_or((n, 0), |(m, e)| (m, e.parse::<i64>().unwrap_or(0)));
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{int}{frac}");
    let leading = digits.len() - digits.trim_start_matches('0').len();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    if significant.is_empty() {
        return (false, String::new(), 0);
    }
    (negative, significant.to_string(), exp + int.len() as i64 - leading as i64)
}

/// A JSON number's text as PostgreSQL's numeric prints it: the exponent applied, the scale
/// (digits after the point) kept: `1.50` is `1.50`, `1e2` is `100`, `1.5e-3` is `0.0015`,
/// `-0` is `0`.
fn numeric_text(n: &str) -> String {
    let (negative, n) = n.strip_prefix('-').map_or((false, n), |r| (true, r));
    let (mantissa, exp) = n.split_once(['e', 'E']).map_or((n, 0), |(m, e)| (m, e.parse::<i64>().unwrap_or(0)));
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let scale = (frac.len() as i64 - exp).max(0) as usize;
    // All digits, and where the point falls among them.
    let digits = format!("{int}{frac}");
    let point = int.len() as i64 + exp;
    let mut whole = String::new();
    let mut fraction = String::new();
    for (i, d) in digits.chars().enumerate() {
        if (i as i64) < point {
            whole.push(d);
        } else {
            fraction.push(d);
        }
    }
    if point > digits.len() as i64 {
        whole.extend(std::iter::repeat_n('0', (point - digits.len() as i64) as usize));
    }
    if point < 0 {
        fraction.insert_str(0, &"0".repeat((-point) as usize));
    }
    fraction.truncate(scale);
    while fraction.len() < scale {
        fraction.push('0');
    }
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let zero = whole == "0" && fraction.bytes().all(|b| b == b'0');
    let sign = if negative && !zero { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// How deep arrays and objects may nest (PostgreSQL's stack depth limit, in effect).
const MAX_DEPTH: usize = 6400;

/// A JSON reader over one text.
struct Parser<'a> {
    text: &'a str,
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn invalid(&self) -> Error {
        Error::InvalidText(format!("invalid input syntax for type json: \"{}\"", self.text))
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn blank(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        let matched = self.peek() == Some(b);
        self.at += usize::from(matched);
        matched
    }

    fn word(&mut self, word: &str, value: Jsonb) -> Result<Jsonb> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.invalid())
        }
    }

    fn value(&mut self) -> Result<Jsonb> {
        match self.peek() {
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => Ok(Jsonb::String(self.string()?)),
            Some(b't') => self.word("true", Jsonb::Bool(true)),
            Some(b'f') => self.word("false", Jsonb::Bool(false)),
            Some(b'n') => self.word("null", Jsonb::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.invalid()),
        }
    }

    fn nested(&mut self, read: fn(&mut Self) -> Result<Jsonb>) -> Result<Jsonb> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::StackDepthExceeded("stack depth limit exceeded (jsonb nests too deeply)".into()));
        }
        let value = read(self);
        self.depth -= 1;
        value
    }

    fn object(&mut self) -> Result<Jsonb> {
        self.at += 1;
        let mut fields: Vec<(String, Jsonb)> = Vec::new();
        self.blank();
        if !self.eat(b'}') {
            loop {
                self.blank();
                if self.peek() != Some(b'"') {
                    return Err(self.invalid());
                }
                let key = self.string()?;
                self.blank();
                if !self.eat(b':') {
                    return Err(self.invalid());
                }
                self.blank();
                let value = self.value()?;
                fields.push((key, value));
                self.blank();
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    return Err(self.invalid());
                }
            }
        }
        // The last of a key's duplicates stays, as in PostgreSQL (a stable sort keeps the
        // order written among equal keys).
        fields.sort_by(|a, b| key_order(&a.0, &b.0));
        let mut unique: Vec<(String, Jsonb)> = Vec::with_capacity(fields.len());
        for field in fields {
            match unique.last_mut() {
                Some(last) if last.0 == field.0 => *last = field,
                _ => unique.push(field),
            }
        }
        Ok(Jsonb::Object(unique))
    }

    fn array(&mut self) -> Result<Jsonb> {
        self.at += 1;
        let mut items = Vec::new();
        self.blank();
        if !self.eat(b']') {
            loop {
                self.blank();
                items.push(self.value()?);
                self.blank();
                if self.eat(b']') {
                    break;
                }
                if !self.eat(b',') {
                    return Err(self.invalid());
                }
            }
        }
        Ok(Jsonb::Array(items))
    }

    fn string(&mut self) -> Result<String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.at..];
            let stop = rest.find(['"', '\\']).ok_or_else(|| self.invalid())?;
            let plain = &rest[..stop];
            if plain.chars().any(|c| (c as u32) < 0x20) {
                return Err(self.invalid());
            }
            out.push_str(plain);
            self.at += stop + 1;
            if rest.as_bytes()[stop] == b'"' {
                return Ok(out);
            }
            let escaped = self.peek().ok_or_else(|| self.invalid())?;
            self.at += 1;
            match escaped {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => out.push(self.unicode_escape()?),
                _ => return Err(self.invalid()),
            }
        }
    }

    /// The character of a `\uXXXX` escape (a surrogate pair: two of them).
    fn unicode_escape(&mut self) -> Result<char> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !self.text[self.at..].starts_with("\\u") {
                return Err(self.invalid());
            }
            self.at += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.invalid());
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        if code == 0 {
            return Err(Error::InvalidText(
                "unsupported Unicode escape sequence: \\u0000 cannot be converted to text".into(),
            ));
        }
        char::from_u32(code).ok_or_else(|| self.invalid())
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self.text.get(self.at..self.at + 4).ok_or_else(|| self.invalid())?;
        let code = u32::from_str_radix(digits, 16).map_err(|_| self.invalid())?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.invalid());
        }
        self.at += 4;
        Ok(code)
    }

    fn number(&mut self) -> Result<Jsonb> {
        let start = self.at;
        self.eat(b'-');
        let digits = |p: &mut Self| {
            let from = p.at;
            while p.peek().is_some_and(|b| b.is_ascii_digit()) {
                p.at += 1;
            }
            p.at - from
        };
        let int_start = self.at;
        let int = digits(self);
        // No leading zeros: `0` alone, or a digit 1-9 first.
        if int == 0 || (int > 1 && self.text.as_bytes()[int_start] == b'0') {
            return Err(self.invalid());
        }
        if self.eat(b'.') && digits(self) == 0 {
            return Err(self.invalid());
        }
        if self.eat(b'e') || self.eat(b'E') {
            let sign = self.at;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if digits(self) == 0 {
                return Err(self.invalid());
            }
            // numeric's range: digits before the point up to 131072 (and no exponent so large
            // that writing it out would exhaust memory).
            if self.text[sign..self.at].trim_start_matches('+').parse::<i64>().map_or(true, |e| e.abs() > 131_072) {
                return Err(Error::OutOfRange("value overflows numeric format".into()));
            }
        }
        Ok(Jsonb::Number(numeric_text(&self.text[start..self.at])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        Jsonb::normalized(s).unwrap()
    }

    #[test]
    fn prints_as_postgresql_prints_jsonb() {
        assert_eq!(text(r#"{"b":1,"a" : [true,null,"x"], "aa":{}}"#), r#"{"a": [true, null, "x"], "b": 1, "aa": {}}"#);
        assert_eq!(text(r#"{"k":1,"k":2}"#), r#"{"k": 2}"#);
        assert_eq!(text(" [ ] "), "[]");
        assert_eq!(text(r#""a\"b\\c\n\u00e9\ud83d\ude00""#), "\"a\\\"b\\\\c\\né😀\"");
        for (given, printed) in [
            ("1.50", "1.50"),
            ("1e2", "100"),
            ("1.5e-3", "0.0015"),
            ("-0", "0"),
            ("12.340E1", "123.40"),
            ("0.5", "0.5"),
        ] {
            assert_eq!(text(given), printed, "{given}");
        }
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in ["", "{", "[1,]", "{'a':1}", "01", "1.", "-", "tru", "\"a", "[1] x", "{\"a\" 1}", "\"\\u0000\""] {
            assert!(matches!(Jsonb::parse(bad), Err(Error::InvalidText(_))), "{bad}");
        }
    }

    #[test]
    fn navigates_objects_and_arrays() {
        let v = Jsonb::parse(r#"{"a": {"b": [10, 20, {"c": "x"}]}, "n": null}"#).unwrap();
        assert_eq!(
            v.field("a").and_then(|a| a.field("b")).and_then(|b| b.element(-1)).unwrap().to_string(),
            r#"{"c": "x"}"#
        );
        assert_eq!(v.at_path(["a", "b", "2", "c"]).and_then(Jsonb::text).as_deref(), Some("x"));
        assert_eq!(v.at_path(["a", "b", "x"]), None);
        assert_eq!(v.field("n").unwrap().text(), None);
        assert_eq!(v.field("missing"), None);
        assert_eq!(v.element(0), None);
    }

    #[test]
    fn containment_and_existence_follow_postgresql() {
        let j = |s: &str| Jsonb::parse(s).unwrap();
        assert!(j(r#"{"a": 1, "b": [1, 2, 3]}"#).contains(&j(r#"{"b": [3, 1]}"#)));
        assert!(!j(r#"{"a": 1}"#).contains(&j(r#"{"a": 1, "b": 2}"#)));
        assert!(j(r#"[1, 2, [3]]"#).contains(&j("[[3]]")));
        assert!(!j(r#"[1, 2, [3]]"#).contains(&j("[3]")));
        assert!(j(r#"["foo", "bar"]"#).contains(&j(r#""foo""#)));
        assert!(!j(r#"{"a": ["foo"]}"#).contains(&j(r#"{"a": "foo"}"#)));
        assert!(j("1.0").contains(&j("1")));
        assert!(!j("[1]").contains(&j("{}")));
        assert!(j(r#"{"a": 1}"#).exists("a") && !j(r#"{"a": 1}"#).exists("b"));
        assert!(j(r#"["a", 1]"#).exists("a") && !j(r#"[["a"]]"#).exists("a"));
        assert!(j(r#""a""#).exists("a"));
    }
}
