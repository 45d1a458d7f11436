//! JSON-RPC: the original gateway's 1.0 form (`{"method","params","id"}` answered by
//! `{ "result": …, "error": …, "id": …}` as `text/plain`) and JSON-RPC 2.0 (single calls,
//! batches and notifications, with the specification's reserved error codes).
//!
//! Parameters and results go through netsvc's [JSON mapping](netsvc_proto::value::json).

use netsvc_proto::value::json::{from_json_with_limits, to_json};
use netsvc_proto::value::{Limits, Value};
use serde_json::{Map, Value as Json, json};

use super::{Call, Fault};

/// The origin of the failures the original form raises itself.
pub const ORIGIN: &str = "netsvc.jsonrpc";

/// JSON-RPC 2.0's reserved codes.
pub mod codes {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The body is JSON but not a request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such service or method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The parameters do not fit.
    pub const INVALID_PARAMS: i64 = -32602;
    /// An encoding or decoding failure inside the gateway or the service.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Any other failure of the call (timeout, application failure, service gone): the
    /// first of the range the specification leaves to implementations.
    pub const SERVER_ERROR: i64 = -32000;
}

/// Most calls in one JSON-RPC 2.0 batch; a longer batch is one Invalid Request.
pub const MAX_BATCH: usize = 1000;

/// A body on `/service/NAME` (the method names a method of that service).
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceBody {
    /// The original's 1.0 form: the id to answer with and the call, or the failure to answer.
    Original {
        /// The request's `id` (`0` when the body was not a request at all, as the original).
        id: Json,
        /// The call, or why there is none.
        call: Result<Call, Fault>,
    },
    /// A body with `"jsonrpc": "2.0"`, or an array (a 2.0 batch).
    V2(V2Body),
}

/// A JSON-RPC 2.0 body.
#[derive(Debug, Clone, PartialEq)]
pub enum V2Body {
    /// Not JSON: answer one Parse error.
    ParseError,
    /// A single request.
    Single(V2Entry),
    /// A batch (never empty: an empty batch is a single Invalid Request).
    Batch(Vec<V2Entry>),
}

/// One request of a 2.0 body.
#[derive(Debug, Clone, PartialEq)]
pub enum V2Entry {
    /// A well-formed call; `id` is `None` for a notification (no answer).
    Call {
        /// The id, `None` for a notification.
        id: Option<Json>,
        /// The `method` string as sent.
        method: String,
        /// The decoded parameters, or why they could not be decoded.
        params: Result<Vec<Value>, String>,
    },
    /// Not a request object: answered with this error.
    Invalid {
        /// The id to answer with (`null` when none could be read).
        id: Json,
        /// The reason.
        message: String,
    },
}

/// Decodes a body posted to `/service/NAME`.
pub fn decode_service_body(body: &[u8], limits: &Limits) -> ServiceBody {
    let Ok(json) = serde_json::from_slice::<Json>(body) else {
        return ServiceBody::Original {
            id: json!(0),
            call: Err(Fault::decoding(ORIGIN)),
        };
    };
    match json {
        Json::Array(items) => ServiceBody::V2(batch(items, limits)),
        Json::Object(object) if object.get("jsonrpc") == Some(&json!("2.0")) => {
            ServiceBody::V2(V2Body::Single(entry(Json::Object(object), limits)))
        }
        Json::Object(object) => original(&object, limits),
        _ => ServiceBody::Original {
            id: json!(0),
            call: Err(Fault::decoding(ORIGIN)),
        },
    }
}

fn original(object: &Map<String, Json>, limits: &Limits) -> ServiceBody {
    let id = object.get("id").cloned().unwrap_or(Json::Null);
    let method = object.get("method").and_then(Json::as_str);
    let params = object.get("params").and_then(Json::as_array);
    let call = match (method, params) {
        (Some(method), Some(params)) => convert(params, limits)
            .map(|params| Call {
                method: method.to_owned(),
                params,
            })
            .map_err(|details| Fault {
                details,
                ..Fault::decoding(ORIGIN)
            }),
        _ => Err(Fault::decoding(ORIGIN)),
    };
    ServiceBody::Original { id, call }
}

fn convert(params: &[Json], limits: &Limits) -> Result<Vec<Value>, String> {
    params
        .iter()
        .map(|p| from_json_with_limits(p, limits).map_err(|e| e.to_string()))
        .collect()
}

/// Decodes a body posted to `/jsonrpc`.
pub fn decode_v2(body: &[u8], limits: &Limits) -> V2Body {
    match serde_json::from_slice::<Json>(body) {
        Err(_) => V2Body::ParseError,
        Ok(Json::Array(items)) => batch(items, limits),
        Ok(other) => V2Body::Single(entry(other, limits)),
    }
}

fn batch(items: Vec<Json>, limits: &Limits) -> V2Body {
    if items.is_empty() {
        return V2Body::Single(invalid(Json::Null, "empty batch"));
    }
    if items.len() > MAX_BATCH {
        return V2Body::Single(invalid(
            Json::Null,
            &format!(
                "batch of {} calls; at most {MAX_BATCH} are accepted",
                items.len()
            ),
        ));
    }
    V2Body::Batch(items.into_iter().map(|item| entry(item, limits)).collect())
}

fn invalid(id: Json, message: &str) -> V2Entry {
    V2Entry::Invalid {
        id,
        message: message.to_owned(),
    }
}

fn entry(json: Json, limits: &Limits) -> V2Entry {
    let Json::Object(mut object) = json else {
        return invalid(Json::Null, "a request must be an object");
    };
    let id = object.remove("id");
    let answer_id = match &id {
        Some(id @ (Json::Null | Json::Number(_) | Json::String(_))) => id.clone(),
        Some(_) => return invalid(Json::Null, "id must be a string, a number or null"),
        None => Json::Null,
    };
    if object.get("jsonrpc") != Some(&json!("2.0")) {
        return invalid(answer_id, "jsonrpc must be \"2.0\"");
    }
    let Some(Json::String(method)) = object.remove("method") else {
        return invalid(answer_id, "method must be a string");
    };
    let params = match object.get("params") {
        None => Ok(Vec::new()),
        Some(Json::Array(params)) => convert(params, limits),
        Some(Json::Object(_)) => {
            Err("parameters by name are not supported: send an array".to_owned())
        }
        Some(_) => return invalid(answer_id, "params must be an array or an object"),
    };
    V2Entry::Call { id, method, params }
}

/// The original form's answer to a successful call, byte for byte as the original writes it.
pub fn encode_original_result(id: &Json, value: &Value) -> String {
    format!(
        "{{ \"result\": {}, \"error\": null, \"id\": {}}}",
        to_json(value),
        id
    )
}

/// The original form's answer to a failed call.
pub fn encode_original_fault(id: &Json, fault: &Fault) -> String {
    format!(
        "{{ \"result\": null, \"error\": {{\"error\": {}, \"description\": {}, \"origin\": {}, \"details\": {} }}, \"id\": {} }}",
        fault.error,
        Json::String(fault.description.clone()),
        Json::String(fault.origin.clone()),
        Json::String(fault.details.clone()),
        id
    )
}

/// A 2.0 success response.
pub fn v2_result(id: Json, value: &Value) -> Json {
    json!({"jsonrpc": "2.0", "result": to_json(value), "id": id})
}

/// A 2.0 error response with one of the reserved codes and, when the error is a netsvc
/// failure, that failure (with its numeric code) in `data`.
pub fn v2_error(id: Json, code: i64, message: &str, data: Option<&Fault>) -> Json {
    let mut error = json!({"code": code, "message": message});
    if let (Some(fault), Some(object)) = (data, error.as_object_mut()) {
        object.insert(
            "data".to_owned(),
            json!({
                "error": fault.error,
                "description": fault.description,
                "origin": fault.origin,
                "details": fault.details,
            }),
        );
    }
    json!({"jsonrpc": "2.0", "error": error, "id": id})
}

/// The 2.0 error for a netsvc failure: 46 (no such service) and 55 (no such method) are
/// Method not found, 54 and 56 Invalid params, 42, 44 and 52 (encoding) Internal error,
/// anything else (47 timeout, 57 application error or service gone, application codes)
/// the implementation-defined Server error; the failure itself goes in `data`.
pub fn v2_failure(id: Json, fault: &Fault) -> Json {
    let (code, message) = match fault.error {
        46 | 55 => (codes::METHOD_NOT_FOUND, "Method not found"),
        54 | 56 => (codes::INVALID_PARAMS, "Invalid params"),
        42 | 44 | 52 => (codes::INTERNAL_ERROR, "Internal error"),
        _ => (codes::SERVER_ERROR, "Server error"),
    };
    v2_error(id, code, message, Some(fault))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits::DEFAULT;

    fn original_call(body: &str) -> (Json, Result<Call, Fault>) {
        match decode_service_body(body.as_bytes(), &LIMITS) {
            ServiceBody::Original { id, call } => (id, call),
            other => panic!("not the original form: {other:?}"),
        }
    }

    #[test]
    fn the_original_form() {
        let (id, call) = original_call(r#"{"id":1,"method":"echo","params":["x"]}"#);
        let call = call.unwrap();
        assert_eq!((id.clone(), call.method.as_str()), (json!(1), "echo"));
        assert_eq!(
            encode_original_result(&id, &call.params[0]),
            r#"{ "result": "x", "error": null, "id": 1}"#
        );
        let fault = Fault {
            error: 1,
            description: "Requested".into(),
            origin: "py".into(),
            details: "details".into(),
        };
        assert_eq!(
            encode_original_fault(&json!(3), &fault),
            r#"{ "result": null, "error": {"error": 1, "description": "Requested", "origin": "py", "details": "details" }, "id": 3 }"#
        );
    }

    #[test]
    fn the_original_decoding_errors() {
        let (id, call) = original_call(r#"{"id":7,"method":"echo"}"#);
        assert_eq!(id, json!(7));
        assert_eq!(call.unwrap_err(), Fault::decoding(ORIGIN));
        for body in ["not json", "[", "42", "\"s\""] {
            let (id, call) = original_call(body);
            assert_eq!(id, json!(0), "{body}");
            assert_eq!(
                encode_original_fault(&id, &call.unwrap_err()),
                r#"{ "result": null, "error": {"error": 54, "description": "Request Decoding Error", "origin": "netsvc.jsonrpc", "details": "" }, "id": 0 }"#
            );
        }
        let (id, call) = original_call(r#"{"method":"echo","params":[1],"id":null}"#);
        assert_eq!(
            (id, call.unwrap().params),
            (Json::Null, vec![Value::from(1)])
        );
    }

    #[test]
    fn version_2_bodies() {
        let body = decode_service_body(
            br#"{"jsonrpc":"2.0","method":"echo","params":[1],"id":"a"}"#,
            &LIMITS,
        );
        assert!(matches!(
            body,
            ServiceBody::V2(V2Body::Single(V2Entry::Call { id: Some(_), .. }))
        ));
        assert_eq!(decode_v2(b"{", &LIMITS), V2Body::ParseError);
        assert!(matches!(
            decode_v2(b"[]", &LIMITS),
            V2Body::Single(V2Entry::Invalid { .. })
        ));
        let V2Body::Batch(entries) = decode_v2(
            br#"[{"jsonrpc":"2.0","method":"a.b"},1,{"jsonrpc":"1.0","method":"x","id":3},{"jsonrpc":"2.0","method":"a.b","params":{"k":1},"id":4}]"#,
            &LIMITS,
        ) else {
            panic!("not a batch")
        };
        assert!(
            matches!(&entries[0], V2Entry::Call { id: None, params: Ok(p), .. } if p.is_empty())
        );
        assert!(matches!(
            &entries[1],
            V2Entry::Invalid { id: Json::Null, .. }
        ));
        assert!(matches!(&entries[2], V2Entry::Invalid { id, .. } if *id == json!(3)));
        assert!(matches!(&entries[3], V2Entry::Call { params: Err(_), .. }));
    }

    #[test]
    fn failures_map_to_reserved_codes() {
        let fault = |error| Fault {
            error,
            description: String::new(),
            origin: "netsvc".into(),
            details: String::new(),
        };
        assert_eq!(
            v2_failure(json!(1), &fault(55))["error"]["code"],
            json!(-32601)
        );
        assert_eq!(
            v2_failure(json!(1), &fault(56))["error"]["code"],
            json!(-32602)
        );
        assert_eq!(
            v2_failure(json!(1), &fault(52))["error"]["code"],
            json!(-32603)
        );
        let timeout = v2_failure(json!(1), &fault(47));
        assert_eq!(timeout["error"]["code"], json!(-32000));
        assert_eq!(timeout["error"]["data"]["error"], json!(47));
    }
}
