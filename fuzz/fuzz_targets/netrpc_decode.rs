//! The gateway's NET-RPC payload decoder on arbitrary bytes: it must never panic or exceed
//! its limits, and whatever it accepts must encode to a payload that decodes and encodes to
//! the same text again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsvc_gateway::codec::{XmlLimits, netrpc};

fuzz_target!(|data: &[u8]| {
    let limits = XmlLimits {
        max_depth: 64,
        max_elements: 10_000,
    };
    let Ok(value) = netrpc::decode(data, limits) else {
        return;
    };
    let first = netrpc::encode(&value);
    let again = netrpc::decode(first.as_bytes(), XmlLimits::DEFAULT)
        .unwrap_or_else(|e| panic!("an encoded value does not decode ({e}): {first}"));
    assert_eq!(first, netrpc::encode(&again), "encoding is a fixed point");
    // The request form (an array at the root) agrees with the plain decoder.
    if let Ok(params) = netrpc::decode_params(data, limits) {
        assert_eq!(netrpc::encode(&netsvc_proto::value::Value::List(params)), first);
    }
});
