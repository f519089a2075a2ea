//! Property tests of the XML-RPC codec: whatever we encode decodes to the same value,
//! for calls, responses and faults, and kwargs survive `encode_args`/`decode_args`.

use koji_adjutant::xmlrpc::{
    decode_args, decode_call, decode_response, encode_args, encode_call, encode_fault_response,
    encode_response, Fault, MethodResponse, Struct, Value,
};
use proptest::prelude::*;

/// Strings XML 1.0 can carry (the encoder replaces the rest, see its docs).
fn xml_string() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            8 => any::<char>().prop_filter("xml char", |c| {
                let u = *c as u32;
                (u >= 0x20 || matches!(c, '\t' | '\n' | '\r')) && u != 0xFFFE && u != 0xFFFF
            }),
            1 => prop::sample::select(vec!['<', '>', '&', '\'', '"', '\r', '\n', ' ', ']']),
        ],
        0..24,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<i64>().prop_map(Value::Int),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>()
            .prop_filter("finite", |d| d.is_finite())
            .prop_map(Value::Double),
        xml_string().prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..100).prop_map(Value::Base64),
        "[0-9]{8}T[0-9]{2}:[0-9]{2}:[0-9]{2}".prop_map(Value::DateTime),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((xml_string(), inner), 0..8)
                .prop_map(|m| Value::Struct(m.into_iter().collect::<Struct>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn response_round_trip(v in value()) {
        let text = encode_response(&v);
        prop_assert!(text.starts_with("<?xml version='1.0'?>\n<methodResponse>\n"));
        let back = decode_response(text.as_bytes()).unwrap();
        prop_assert_eq!(back, MethodResponse::Params(vec![v]));
    }

    #[test]
    fn call_round_trip(name in "[a-zA-Z_.]{1,30}", params in proptest::collection::vec(value(), 0..5)) {
        let text = encode_call(&name, &params);
        let back = decode_call(text.as_bytes()).unwrap();
        prop_assert_eq!(back.method, name);
        prop_assert_eq!(back.params, params);
    }

    #[test]
    fn fault_round_trip(code in any::<i32>(), msg in xml_string()) {
        let f = Fault::new(code, msg);
        let back = decode_response(encode_fault_response(&f).as_bytes()).unwrap();
        prop_assert_eq!(back, MethodResponse::Fault(f));
    }

    #[test]
    fn kwargs_round_trip(args in proptest::collection::vec(leaf(), 0..4),
                         kw in proptest::collection::vec(("[a-z]{1,8}", value()), 0..4)) {
        let kwargs: Struct = kw.into_iter().collect();
        let encoded = encode_args(args.clone(), kwargs.clone());
        let text = encode_call("m", &encoded);
        let (a, k) = decode_args(decode_call(text.as_bytes()).unwrap().params);
        prop_assert_eq!(a, args);
        prop_assert_eq!(k, kwargs);
    }

    #[test]
    fn garbage_never_panics(doc in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_response(&doc);
        let _ = decode_call(&doc);
    }

    #[test]
    fn mutated_documents_never_panic(v in value(), cut in 0usize..2000, byte in any::<u8>()) {
        let mut text = encode_response(&v).into_bytes();
        if !text.is_empty() {
            let i = cut % text.len();
            text[i] = byte;
            let _ = decode_response(&text);
            text.truncate(i);
            let _ = decode_response(&text);
        }
    }
}
