//! Structured: an arbitrary `Value` (and method name, params and fault) encoded as
//! Python's xmlrpc.client would, then decoded: the same value must come back (after
//! the substitutions the encoder documents).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use koji_adjutant::xmlrpc::{Fault, Struct, Value};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_harness/xmlrpc.rs"]
mod harness;

/// Deepest nesting generated (the decoder refuses more than 128).
const MAX_DEPTH: u32 = 12;

fn value(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let top = if depth >= MAX_DEPTH { 7 } else { 9 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Nil,
        1 => Value::Int(i64::arbitrary(u)?),
        2 => Value::Bool(bool::arbitrary(u)?),
        3 => Value::Double(f64::arbitrary(u)?),
        4 | 5 => Value::String(String::arbitrary(u)?),
        6 => Value::Base64(Vec::<u8>::arbitrary(u)?),
        7 => Value::DateTime(String::arbitrary(u)?),
        8 => {
            let n = u.int_in_range(0..=6)?;
            let mut a = Vec::with_capacity(n);
            for _ in 0..n {
                a.push(value(u, depth + 1)?);
            }
            Value::Array(a)
        }
        _ => {
            let n = u.int_in_range(0..=6)?;
            let mut s = Struct::new();
            for _ in 0..n {
                let k = String::arbitrary(u)?;
                s.insert(k, value(u, depth + 1)?);
            }
            Value::Struct(s)
        }
    })
}

fn run(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    let v = value(&mut u, 0)?;
    harness::check_round_trip(&v);
    let method = String::arbitrary(&mut u)?;
    let n = u.int_in_range(0..=3)?;
    let mut params = vec![v];
    for _ in 0..n {
        params.push(value(&mut u, 0)?);
    }
    harness::check_call_round_trip(&method, &params);
    harness::check_fault_round_trip(&Fault::new(
        i32::arbitrary(&mut u)?,
        String::arbitrary(&mut u)?,
    ));
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
