//! Sans-IO codecs of the gateway's dialects: bytes in, calls out; values and failures in,
//! bytes out. Nothing here touches a socket, a clock or a runtime, so every decoder can be
//! fuzzed on its own (`fuzz/fuzz_targets/xmlrpc_decode.rs`, `netrpc_decode.rs`).
//!
//! Every decoder bounds what hostile input can cost: bodies are limited by the caller
//! (the server's body limit), and the XML decoders bound element nesting and element count
//! ([`XmlLimits`]) before they build anything.

pub mod jsonrpc;
pub mod netrpc;
mod xml;
pub mod xmlrpc;

pub use xml::XmlLimits;

use netsvc_proto::value::Value;

/// A method call decoded from a request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The method's name.
    pub method: String,
    /// The positional arguments.
    pub params: Vec<Value>,
}

/// A failure in the original's four fields, as the dialects encode it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The error code (the original's numbers for framework failures).
    pub error: i32,
    /// A short description of the code.
    pub description: String,
    /// Who raised it (`netsvc`, `netsvc.jsonrpc`, an application's name).
    pub origin: String,
    /// Free text.
    pub details: String,
}

impl Fault {
    /// The failure the original gateways answer to a body they cannot decode: 54, "Request
    /// Decoding Error", from `origin` (`netsvc.jsonrpc`, `netsvc.xmlrpc`), with no details.
    pub fn decoding(origin: &str) -> Self {
        Self {
            error: 54,
            description: "Request Decoding Error".to_owned(),
            origin: origin.to_owned(),
            details: String::new(),
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is not UTF-8.
    #[error("body is not UTF-8")]
    NotUtf8,
    /// The body is not well-formed XML.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// Elements are nested deeper than the limit.
    #[error("XML nested deeper than {0} elements")]
    TooDeep(usize),
    /// The body has more elements than the limit.
    #[error("XML has more than {0} elements")]
    TooManyElements(usize),
    /// Well-formed, but not what the dialect expects.
    #[error("unexpected content: {0}")]
    Structure(String),
    /// A scalar's text does not fit its type.
    #[error("invalid {kind} value {text:?}")]
    Scalar {
        /// The type.
        kind: String,
        /// The offending text (at most 64 characters of it).
        text: String,
    },
}

impl DecodeError {
    fn scalar(kind: &str, text: &str) -> Self {
        Self::Scalar {
            kind: kind.to_owned(),
            text: text.chars().take(64).collect(),
        }
    }
}

/// Escapes text for XML content: the five special characters, and a carriage return as a
/// reference (a raw one would read back as a line feed).
pub(crate) fn escape_xml(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\r' => out.push_str("&#13;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

/// Escapes text for an XML attribute value: as [`escape_xml`], and tabs and line feeds as
/// references too (raw ones read back as spaces).
pub(crate) fn escape_attr(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c => escape_xml(c.encode_utf8(&mut [0; 4]), out),
        }
    }
}

/// A float as the XML dialects write it: the shortest text that reads back to the same
/// number (`1.5`, `1e300`, `-0.0`), `nan`, `inf` or `-inf` for the non-finite ones.
pub(crate) fn float_text(f: f64) -> String {
    if f.is_nan() {
        "nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{f:?}")
    }
}
