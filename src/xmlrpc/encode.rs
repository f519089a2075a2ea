//! Writing XML-RPC exactly as Python's `xmlrpc.client.dumps` with Koji's
//! `ExtendedMarshaller` writes it (kojid's `koji.xmlrpcplus.dumps`): same element
//! spelling, same newlines, `<i8>` beyond int32, `<nil/>` for None. A result text we
//! hand to `host.closeTask` is therefore the text kojid would have produced.
//!
//! Two deliberate differences, both for strings Python would turn into XML the hub
//! cannot read back: a carriage return is written as `&#13;` (Python writes it raw
//! and the parser turns it into a newline), and characters XML 1.0 forbids (C0
//! controls other than tab/newline/CR, U+FFFE, U+FFFF) become U+FFFD.

use std::fmt::Write as _;

use base64::Engine as _;

use super::fault::Fault;
use super::value::Value;

const PROLOG: &str = "<?xml version='1.0'?>\n";

/// A complete `methodCall` document.
pub fn encode_call(method: &str, params: &[Value]) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(PROLOG);
    out.push_str("<methodCall>\n<methodName>");
    escape_into(&mut out, method);
    out.push_str("</methodName>\n");
    write_params(&mut out, params);
    out.push_str("</methodCall>\n");
    out
}

/// A complete `methodResponse` with one param: what `host.closeTask` takes as its
/// `response` argument (`koji.xmlrpcplus.dumps((result,), methodresponse=1)`).
pub fn encode_response(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(PROLOG);
    out.push_str("<methodResponse>\n");
    write_params(&mut out, std::slice::from_ref(value));
    out.push_str("</methodResponse>\n");
    out
}

/// A complete `methodResponse` with a fault: what `host.failTask` takes.
pub fn encode_fault_response(fault: &Fault) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(PROLOG);
    out.push_str("<methodResponse>\n<fault>\n");
    write_value(&mut out, &fault.to_value());
    out.push_str("</fault>\n</methodResponse>\n");
    out
}

/// One `<value>` element (with Python's trailing newline where Python writes one).
pub fn encode_value(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_params(out: &mut String, params: &[Value]) {
    out.push_str("<params>\n");
    for p in params {
        out.push_str("<param>\n");
        write_value(out, p);
        out.push_str("</param>\n");
    }
    out.push_str("</params>\n");
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Nil => out.push_str("<value><nil/></value>"),
        Value::Bool(b) => {
            out.push_str("<value><boolean>");
            out.push_str(if *b { "1" } else { "0" });
            out.push_str("</boolean></value>\n");
        }
        Value::Int(i) => {
            let tag = if i32::try_from(*i).is_ok() {
                "int"
            } else {
                "i8"
            };
            let _ = writeln!(out, "<value><{tag}>{i}</{tag}></value>");
        }
        Value::Double(d) => {
            out.push_str("<value><double>");
            out.push_str(&python_float_repr(*d));
            out.push_str("</double></value>\n");
        }
        Value::String(s) => {
            out.push_str("<value><string>");
            escape_into(out, s);
            out.push_str("</string></value>\n");
        }
        Value::Base64(b) => {
            out.push_str("<value><base64>\n");
            // base64.encodebytes: lines of at most 76 characters, each ending in \n
            let enc = base64::engine::general_purpose::STANDARD.encode(b);
            for chunk in enc.as_bytes().chunks(76) {
                out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                out.push('\n');
            }
            out.push_str("</base64></value>\n");
        }
        Value::DateTime(s) => {
            out.push_str("<value><dateTime.iso8601>");
            escape_into(out, s);
            out.push_str("</dateTime.iso8601></value>\n");
        }
        Value::Array(a) => {
            out.push_str("<value><array><data>\n");
            for v in a {
                write_value(out, v);
            }
            out.push_str("</data></array></value>\n");
        }
        Value::Struct(s) => {
            out.push_str("<value><struct>\n");
            for (k, v) in s {
                out.push_str("<member>\n<name>");
                escape_into(out, k);
                out.push_str("</name>\n");
                write_value(out, v);
                out.push_str("</member>\n");
            }
            out.push_str("</struct></value>\n");
        }
    }
}

/// Python's `xmlrpc.client.escape` (`&`, `<`, `>`), plus the two fixes described in
/// the module documentation.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, in fixed notation for
/// decimal exponents -4..16 and otherwise as `d.ddde+XX`.
pub fn python_float_repr(d: f64) -> String {
    if d.is_nan() {
        return "nan".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e17".
    let sci = format!("{d:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmlrpc::Struct;

    #[test]
    fn float_repr_matches_python() {
        for (v, s) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1751473755.123456, "1751473755.123456"),
            (1e300, "1e+300"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(python_float_repr(v), s, "{v}");
        }
    }

    #[test]
    fn matches_python_dumps_byte_for_byte() {
        // Expected texts produced by CPython 3.11 xmlrpc.client.dumps.
        assert_eq!(
            encode_response(&Value::Nil),
            "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><nil/></value></param>\n</params>\n</methodResponse>\n"
        );
        assert_eq!(
            encode_fault_response(&Fault::new(1, "a<b")),
            "<?xml version='1.0'?>\n<methodResponse>\n<fault>\n<value><struct>\n<member>\n<name>faultCode</name>\n<value><int>1</int></value>\n</member>\n<member>\n<name>faultString</name>\n<value><string>a&lt;b</string></value>\n</member>\n</struct></value>\n</fault>\n</methodResponse>\n"
        );
        let mut s = Struct::new();
        s.insert(
            "a".into(),
            Value::Array(vec![Value::Int(1), Value::Double(2.5), Value::from("x")]),
        );
        s.insert("b".into(), Value::Base64(b"hi".to_vec()));
        assert_eq!(
            encode_call("m", &[Value::Struct(s)]),
            "<?xml version='1.0'?>\n<methodCall>\n<methodName>m</methodName>\n<params>\n<param>\n<value><struct>\n<member>\n<name>a</name>\n<value><array><data>\n<value><int>1</int></value>\n<value><double>2.5</double></value>\n<value><string>x</string></value>\n</data></array></value>\n</member>\n<member>\n<name>b</name>\n<value><base64>\naGk=\n</base64></value>\n</member>\n</struct></value>\n</param>\n</params>\n</methodCall>\n"
        );
    }

    #[test]
    fn i8_beyond_int32() {
        assert_eq!(
            encode_value(&Value::Int(2147483647)),
            "<value><int>2147483647</int></value>\n"
        );
        assert_eq!(
            encode_value(&Value::Int(2147483648)),
            "<value><i8>2147483648</i8></value>\n"
        );
        assert_eq!(
            encode_value(&Value::Int(-2147483649)),
            "<value><i8>-2147483649</i8></value>\n"
        );
    }

    #[test]
    fn unrepresentable_characters() {
        assert_eq!(
            encode_value(&Value::from("a\rb\u{1b}c\td")),
            "<value><string>a&#13;b\u{FFFD}c\td</string></value>\n"
        );
    }
}
