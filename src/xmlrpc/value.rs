//! The XML-RPC value model, with Koji's conventions.

use std::fmt;

use indexmap::IndexMap;

/// An XML-RPC struct. Insertion-ordered like a Python dict, so what we encode comes
/// out in the order a handler built it (as kojid's dicts do); equality ignores order.
pub type Struct = IndexMap<String, Value>;

/// One XML-RPC value as Koji's hub and kojid exchange them.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `<nil/>` (Python `None`).
    #[default]
    Nil,
    /// `<i4>`, `<int>` or `<i8>`: written as `<int>` in the int32 range, `<i8>` beyond.
    Int(i64),
    /// `<boolean>`.
    Bool(bool),
    /// `<double>`.
    Double(f64),
    /// `<string>` or an untyped `<value>`.
    String(String),
    /// `<base64>` (not used by the builder protocol; kept for completeness).
    Base64(Vec<u8>),
    /// `<dateTime.iso8601>`, kept as its text. The hub itself never sends these: its
    /// datetimes arrive as strings such as `"2025-07-02 16:29:15.123456+00:00"`
    /// (see [`Value::as_hub_datetime`]).
    DateTime(String),
    /// `<array>`.
    Array(Vec<Value>),
    /// `<struct>`.
    Struct(Struct),
}

impl Value {
    /// An empty struct.
    pub fn new_struct() -> Value {
        Value::Struct(Struct::new())
    }

    /// A struct from `(key, value)` pairs, in order.
    pub fn struct_from<K: Into<String>, I: IntoIterator<Item = (K, Value)>>(items: I) -> Value {
        Value::Struct(items.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// `true` for [`Value::Nil`].
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// The integer, if this is an int.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A number as f64: doubles, and ints (Python code mixes them freely, e.g. the
    /// hub's `capacity` or an `*_ts` field may arrive as either).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Double(d) => Some(*d),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The boolean, if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The members, if this is a struct.
    pub fn as_struct(&self) -> Option<&Struct> {
        match self {
            Value::Struct(s) => Some(s),
            _ => None,
        }
    }

    /// A struct member (None when absent or when this is not a struct).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_struct().and_then(|s| s.get(key))
    }

    /// Python truthiness (`bool(x)`): what `decode_args` and many hub fields rely on.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Int(i) => *i != 0,
            Value::Bool(b) => *b,
            Value::Double(d) => *d != 0.0,
            Value::String(s) => !s.is_empty(),
            Value::Base64(b) => !b.is_empty(),
            Value::DateTime(_) => true,
            Value::Array(a) => !a.is_empty(),
            Value::Struct(s) => !s.is_empty(),
        }
    }

    /// The hub's datetime strings (`isoformat(' ')`, e.g.
    /// `2025-07-02 16:29:15.123456+00:00` or without fraction/offset) as seconds since
    /// the epoch. Offsets other than UTC are applied. Returns None for other shapes.
    pub fn as_hub_datetime(&self) -> Option<f64> {
        let s = match self {
            Value::String(s) | Value::DateTime(s) => s.as_str(),
            _ => return None,
        };
        parse_hub_datetime(s)
    }

    /// A short name of the type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Int(_) => "int",
            Value::Bool(_) => "boolean",
            Value::Double(_) => "double",
            Value::String(_) => "string",
            Value::Base64(_) => "base64",
            Value::DateTime(_) => "dateTime.iso8601",
            Value::Array(_) => "array",
            Value::Struct(_) => "struct",
        }
    }
}

/// Parse `YYYY-MM-DD[ T]HH:MM:SS[.ffffff][+HH:MM|Z]` (and the compact
/// `YYYYMMDDTHH:MM:SS` of `dateTime.iso8601`) to epoch seconds.
pub fn parse_hub_datetime(s: &str) -> Option<f64> {
    let s = s.trim();
    let (date, rest) = if s.len() >= 10 && s.as_bytes().get(4) == Some(&b'-') {
        (&s[..10], &s[10..])
    } else if s.len() >= 8 && s.as_bytes().get(8) == Some(&b'T') {
        (&s[..8], &s[8..])
    } else {
        return None;
    };
    let digits: String = date.chars().filter(|c| *c != '-').collect();
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i64 = digits[0..4].parse().ok()?;
    let month: u32 = digits[4..6].parse().ok()?;
    let day: u32 = digits[6..8].parse().ok()?;
    let rest = rest.strip_prefix([' ', 'T'])?;
    if rest.len() < 8 {
        return None;
    }
    let (hms, mut tail) = rest.split_at(8);
    let mut it = hms.split(':');
    let h: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let sec: i64 = it.next()?.parse().ok()?;
    let mut frac = 0.0;
    if let Some(t) = tail.strip_prefix('.') {
        let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        if end == 0 {
            return None;
        }
        frac = format!("0.{}", &t[..end]).parse().ok()?;
        tail = &t[end..];
    }
    let offset = match tail {
        "" | "Z" | "z" => 0,
        t if (t.starts_with('+') || t.starts_with('-')) && t.len() >= 3 => {
            let sign = if t.starts_with('-') { -1 } else { 1 };
            let body: String = t[1..].chars().filter(|c| *c != ':').collect();
            if body.len() != 4 && body.len() != 2 {
                return None;
            }
            let oh: i64 = body[0..2].parse().ok()?;
            let om: i64 = if body.len() == 4 {
                body[2..4].parse().ok()?
            } else {
                0
            };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    if !(1..=12).contains(&month) || day == 0 || day > 31 || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86400 + h * 3600 + m * 60 + sec - offset) as f64 + frac)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

impl fmt::Display for Value {
    /// A compact, Python-repr-like rendering for logs and error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("None"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            Value::Double(d) => write!(f, "{d:?}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Base64(b) => write!(f, "<{} bytes>", b.len()),
            Value::DateTime(s) => write!(f, "{s}"),
            Value::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Struct(s) => {
                f.write_str("{")?;
                for (i, (k, v)) in s.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k:?}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value { Value::Int(v as i64) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Double(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::String(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::String(v.clone())
    }
}
impl From<Struct> for Value {
    fn from(v: Struct) -> Value {
        Value::Struct(v)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Nil, Into::into)
    }
}

/// The key Koji uses to mark a trailing struct as keyword arguments.
pub const STARSTAR: &str = "__starstar";

/// `koji.encode_args`: positional args plus, when there are any, one trailing struct
/// holding the keyword args and `"__starstar": true`.
pub fn encode_args(mut args: Vec<Value>, kwargs: Struct) -> Vec<Value> {
    if !kwargs.is_empty() {
        let mut kw = kwargs;
        kw.insert(STARSTAR.to_owned(), Value::Bool(true));
        args.push(Value::Struct(kw));
    }
    args
}

/// `koji.decode_args`: splits a trailing struct whose `__starstar` is truthy off as
/// keyword arguments.
pub fn decode_args(mut args: Vec<Value>) -> (Vec<Value>, Struct) {
    let is_kw =
        matches!(args.last(), Some(Value::Struct(s)) if s.get(STARSTAR).is_some_and(Value::truthy));
    if is_kw {
        if let Some(Value::Struct(mut kw)) = args.pop() {
            kw.shift_remove(STARSTAR);
            return (args, kw);
        }
    }
    (args, Struct::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starstar_round_trip() {
        let mut kw = Struct::new();
        kw.insert(
            "data".into(),
            Value::struct_from([("maxjobs", Value::Int(3))]),
        );
        let args = encode_args(vec![Value::Double(1.5), Value::Bool(true)], kw.clone());
        assert_eq!(args.len(), 3);
        assert_eq!(args[2].get(STARSTAR), Some(&Value::Bool(true)));
        let (pos, kw2) = decode_args(args);
        assert_eq!(pos, vec![Value::Double(1.5), Value::Bool(true)]);
        assert_eq!(kw2, kw);
    }

    #[test]
    fn no_kwargs_adds_nothing_and_plain_dicts_stay_positional() {
        assert_eq!(
            encode_args(vec![Value::Int(1)], Struct::new()),
            vec![Value::Int(1)]
        );
        let plain = Value::struct_from([("__starstar", Value::Bool(false)), ("a", Value::Int(1))]);
        let (pos, kw) = decode_args(vec![plain.clone()]);
        assert_eq!(pos, vec![plain]);
        assert!(kw.is_empty());
        // any truthy marker counts, as in Python
        let marked = Value::struct_from([("__starstar", Value::Int(1)), ("a", Value::Int(1))]);
        let (pos, kw) = decode_args(vec![marked]);
        assert!(pos.is_empty());
        assert_eq!(kw.get("a"), Some(&Value::Int(1)));
    }

    #[test]
    fn hub_datetimes() {
        let v = Value::from("2025-07-02 16:29:15.123456+00:00");
        let ts = v.as_hub_datetime().unwrap();
        assert!((ts - 1751473755.123456).abs() < 1e-6, "{ts}");
        assert_eq!(parse_hub_datetime("1970-01-01 01:00:00+01:00"), Some(0.0));
        assert_eq!(parse_hub_datetime("19700101T00:00:10"), Some(10.0));
        assert_eq!(parse_hub_datetime("2024-02-30x"), None);
        assert_eq!(parse_hub_datetime("yesterday"), None);
    }
}
