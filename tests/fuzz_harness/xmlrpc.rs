//! The checks of the XML-RPC fuzz targets, shared with the regression tests.
//!
//! Included by path from `fuzz/fuzz_targets/xmlrpc_*.rs` and from
//! `tests/fuzz_regressions.rs`, so a crashing input found by the fuzzer is replayed by
//! `cargo test` through exactly the same code. See docs/fuzzing.md.

#![allow(dead_code)]

use koji_adjutant::xmlrpc::decode::decode_value;
use koji_adjutant::xmlrpc::encode::encode_value;
use koji_adjutant::xmlrpc::{
    decode_call, decode_response, encode_call, encode_fault_response, encode_response, Fault,
    MethodResponse, Struct, Value,
};

/// What the encoder documents it does to a string: characters XML 1.0 cannot carry
/// (C0 controls other than tab/newline/CR, U+FFFE, U+FFFF) become U+FFFD.
pub fn xml_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// The value we must get back after encoding `v` and decoding the text: strings made
/// XML-safe, dateTime text also trimmed (the decoder trims it, as Python does), struct
/// keys that become equal merged as the decoder merges duplicate members.
pub fn after_round_trip(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(xml_safe(s)),
        Value::DateTime(s) => Value::DateTime(xml_safe(s).trim().to_owned()),
        Value::Array(a) => Value::Array(a.iter().map(after_round_trip).collect()),
        Value::Struct(s) => {
            let mut out = Struct::new();
            for (k, v) in s {
                out.insert(xml_safe(k), after_round_trip(v));
            }
            Value::Struct(out)
        }
        other => other.clone(),
    }
}

/// Equality that is exact for doubles (same bits, so `-0.0` ≠ `0.0`; any NaN equals
/// any NaN) and ignores struct member order only as `IndexMap`'s `==` does.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Double(x), Value::Double(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Struct(x), Value::Struct(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        (a, b) => a == b,
    }
}

fn assert_same(what: &str, text: &str, want: &Value, got: &Value) {
    assert!(
        same(want, got),
        "{what}: value changed in a round trip\n want: {want:?}\n  got: {got:?}\n text: {text:?}"
    );
}

/// Encode `v` every way we can and decode it again: the result must be `v` (after the
/// documented substitutions), and decoding must never fail on what we wrote.
pub fn check_round_trip(v: &Value) {
    let want = after_round_trip(v);

    let text = encode_response(v);
    match decode_response(text.as_bytes()) {
        Ok(MethodResponse::Params(p)) if p.len() == 1 => {
            assert_same("response", &text, &want, &p[0])
        }
        other => panic!("response: decoded as {other:?}\n text: {text:?}"),
    }

    let text = encode_value(v);
    match decode_value(text.as_bytes()) {
        Ok(got) => assert_same("value", &text, &want, &got),
        Err(e) => panic!("value: {e}\n text: {text:?}"),
    }
}

/// `encode_call` → `decode_call` keeps the method name (XML-safe, trimmed as the decoder
/// trims it) and every param.
pub fn check_call_round_trip(method: &str, params: &[Value]) {
    let text = encode_call(method, params);
    let call =
        decode_call(text.as_bytes()).unwrap_or_else(|e| panic!("call: {e}\n text: {text:?}"));
    assert_eq!(
        call.method,
        xml_safe(method).trim(),
        "call: method name\n text: {text:?}"
    );
    assert_eq!(
        call.params.len(),
        params.len(),
        "call: params\n text: {text:?}"
    );
    for (want, got) in params.iter().zip(&call.params) {
        assert_same("call param", &text, &after_round_trip(want), got);
    }
}

/// A fault survives `encode_fault_response` → `decode_response`.
pub fn check_fault_round_trip(f: &Fault) {
    let text = encode_fault_response(f);
    match decode_response(text.as_bytes()) {
        Ok(MethodResponse::Fault(got)) => {
            assert_eq!(got.code, f.code, "fault code\n text: {text:?}");
            assert_eq!(
                got.string,
                xml_safe(&f.string),
                "fault string\n text: {text:?}"
            );
        }
        other => panic!("fault: decoded as {other:?}\n text: {text:?}"),
    }
}

/// Arbitrary bytes: no decoder may panic, and whatever one accepts must survive being
/// encoded again (a value from the hub may be sent back to it, e.g. in a task result).
pub fn check_decode(data: &[u8]) {
    match decode_response(data) {
        Ok(MethodResponse::Params(p)) => p.iter().for_each(check_round_trip),
        Ok(MethodResponse::Fault(f)) => check_fault_round_trip(&f),
        Err(e) => drop(e.to_string()),
    }
    match decode_call(data) {
        Ok(call) => check_call_round_trip(&call.method, &call.params),
        Err(e) => drop(e.to_string()),
    }
    match decode_value(data) {
        Ok(v) => check_round_trip(&v),
        Err(e) => drop(e.to_string()),
    }
}
