//! The value decoder on arbitrary bytes: it must never panic or exceed its limits, and
//! whatever it accepts must re-encode to bytes that decode to the same thing (compared as
//! bytes, so that NaN payloads count as equal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsvc_proto::value::{self, Limits};

fn check(data: &[u8], limits: &Limits) {
    let Ok(decoded) = value::decode(data, limits) else {
        return;
    };
    assert!(data.len() <= limits.max_size);
    // Anything decoded within the limits can be encoded within them (the encoding of a
    // decoded value is never longer, except for float 32, which widens to float 64).
    let Ok(first) = value::encode(&decoded, &Limits::DEFAULT) else {
        panic!("a decoded value does not encode: {decoded:?}");
    };
    let again = value::decode(&first, &Limits::DEFAULT).expect("an encoded value decodes");
    let second = value::encode(&again, &Limits::DEFAULT).expect("and encodes again");
    assert_eq!(first, second, "encoding is canonical");
    // The JSON mapping must cope with anything the decoder produces.
    let _ = decoded.to_json_string();
}

fuzz_target!(|data: &[u8]| {
    check(data, &Limits::DEFAULT);
    check(
        data,
        &Limits {
            max_depth: 3,
            max_size: 64,
        },
    );
});
