//! The gateway's XML-RPC decoder on arbitrary bytes: it must never panic or exceed its
//! limits, and whatever it accepts must encode to a call that decodes and encodes to the
//! same text again (a fixed point after one round, as the first round normalises: bare
//! values become strings, `i4` becomes `int`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsvc_gateway::codec::{XmlLimits, xmlrpc};

fuzz_target!(|data: &[u8]| {
    let limits = XmlLimits {
        max_depth: 64,
        max_elements: 10_000,
    };
    let Ok(call) = xmlrpc::decode_call(data, limits) else {
        return;
    };
    let first = xmlrpc::encode_call(&call);
    let again = xmlrpc::decode_call(first.as_bytes(), XmlLimits::DEFAULT)
        .unwrap_or_else(|e| panic!("an encoded call does not decode ({e}): {first}"));
    assert_eq!(first, xmlrpc::encode_call(&again), "encoding is a fixed point");
    // Responses and faults cope with anything the decoder produces.
    for param in &call.params {
        let _ = xmlrpc::encode_response(param);
    }
});
