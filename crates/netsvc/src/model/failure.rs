//! Failures: the typed error half of a request's outcome.
//!
//! A [`Failure`] carries the four fields of the original system (error code, description,
//! origin, details), so that OSE users recognise them and gateways can pass them on as is.
//! Framework failures use origin `"netsvc"` and the codes in [`codes`]; applications choose
//! their own codes and origin.

use std::fmt;

use netsvc_proto::value::Value;

/// What a method handler returns, and what a call ends in.
pub type MethodResult = Result<Value, Failure>;

/// The framework's failure codes, with the original system's numbers.
pub mod codes {
    /// The service does not exist (no service with that name, or an empty endpoint).
    pub const SERVICE_UNAVAILABLE: i32 = 46;
    /// No response arrived within the request's timeout.
    pub const REQUEST_TIMEOUT: i32 = 47;
    /// The caller withdrew the request before it completed.
    pub const REQUEST_ABORTED: i32 = 48;
    /// The service has too many requests in progress to accept another.
    pub const RESOURCE_UNAVAILABLE: i32 = 51;
    /// The caller may not call this service (its user's `call` permission; not an OSE
    /// code: the original never refused a call).
    pub const NOT_AUTHORISED: i32 = 49;
    /// The request's arguments could not be encoded (too deep or too large).
    pub const REQUEST_ENCODING_ERROR: i32 = 42;
    /// The result of the method could not be encoded.
    pub const RESPONSE_ENCODING_ERROR: i32 = 52;
    /// The request's arguments could not be decoded.
    pub const REQUEST_DECODING_ERROR: i32 = 54;
    /// The service exports no method of that name.
    pub const METHOD_UNAVAILABLE: i32 = 55;
    /// The arguments do not fit the method (count or types).
    pub const PARAMETERS_INCORRECT: i32 = 56;
    /// The method failed: it panicked, or the service went away before responding.
    pub const APPLICATION_ERROR: i32 = 57;
    /// The response could not be decoded by the caller.
    pub const RESPONSE_DECODING_ERROR: i32 = 44;
}

/// The origin of failures raised by the framework itself.
pub const NETSVC_ORIGIN: &str = "netsvc";

/// The details of the failure a caller gets when the service goes away before responding.
pub const WITHDRAWN_DETAILS: &str = "Service was withdrawn before response received.";

/// The description the original system gives each framework code.
pub fn description_of(error: i32) -> &'static str {
    match error {
        40 => "Unknown Error",
        41 => "Resource Unavailable",
        codes::REQUEST_ENCODING_ERROR => "Request Encoding Error",
        43 => "Response Headers Invalid",
        codes::RESPONSE_DECODING_ERROR => "Response Decoding Error",
        45 => "Service Address Invalid",
        codes::SERVICE_UNAVAILABLE => "Service Unavailable",
        codes::REQUEST_TIMEOUT => "Request Timeout",
        codes::REQUEST_ABORTED => "Request Aborted",
        codes::NOT_AUTHORISED => "Not Authorised",
        50 => "Unknown Error",
        codes::RESOURCE_UNAVAILABLE => "Resource Unavailable",
        codes::RESPONSE_ENCODING_ERROR => "Response Encoding Error",
        53 => "Request Headers Invalid",
        codes::REQUEST_DECODING_ERROR => "Request Decoding Error",
        codes::METHOD_UNAVAILABLE => "Method Unavailable",
        codes::PARAMETERS_INCORRECT => "Parameters Incorrect",
        codes::APPLICATION_ERROR => "Application Error",
        58 => "Response Aborted",
        _ => "Application Failure",
    }
}

/// Why a request did not produce a value.
///
/// ```
/// use netsvc::Failure;
/// use netsvc::failure::codes;
/// let f = Failure::new(1, "Programming Error", "db", "table missing");
/// assert_eq!((f.error, f.origin.as_str()), (1, "db"));
/// assert_eq!(Failure::method_unavailable("nosuch").error, codes::METHOD_UNAVAILABLE);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Failure {
    /// The error code: one of [`codes`] for framework failures, any integer for applications.
    pub error: i32,
    /// A short description of the code.
    pub description: String,
    /// Who raised it: `"netsvc"` for the framework, an application-chosen name otherwise.
    pub origin: String,
    /// Free text: what exactly went wrong.
    pub details: String,
    /// Whether the service went away before it responded (the original's 57 says so only
    /// in its details; netsvc carries it as a flag, so no one has to read text).
    #[serde(skip)]
    withdrawn: bool,
}

/// What kind of failure a [`Failure`] is, for code that handles failures by kind rather
/// than by number. Framework failures (origin `"netsvc"`) have a kind of their own each;
/// every failure of another origin is [`Application`](Self::Application).
///
/// ```
/// use netsvc::{Failure, FailureKind};
/// assert_eq!(Failure::withdrawn().kind(), FailureKind::Withdrawn);
/// assert_eq!(Failure::new(7, "Out of paper", "printer", "").kind(), FailureKind::Application(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// 46: there is no such service.
    ServiceUnavailable,
    /// 47: no response within the timeout.
    Timeout,
    /// 48: the request was aborted.
    Aborted,
    /// 49: the caller may not call the service; the request did not reach it.
    NotAuthorised,
    /// 51: the service, or the link toward it, is saturated; the request did not run.
    Busy,
    /// 42, 52: the request or its result could not be encoded (too deep, too large).
    Encoding,
    /// 44, 54: the request or its result could not be decoded.
    Decoding,
    /// 55: the service exports no such method.
    MethodUnavailable,
    /// 56: the arguments do not fit the method.
    BadArguments,
    /// 57: the method failed (it panicked).
    MethodFailed,
    /// 57: the service went away before it responded; the request may or may not have run.
    Withdrawn,
    /// Another framework code.
    Other(i32),
    /// A failure raised by the application (any origin but `"netsvc"`), with its code.
    Application(i32),
}

impl Failure {
    /// An application failure with exactly these four fields.
    pub fn new(
        error: i32,
        description: impl Into<String>,
        origin: impl Into<String>,
        details: impl Into<String>,
    ) -> Self {
        Self {
            error,
            description: description.into(),
            origin: origin.into(),
            details: details.into(),
            withdrawn: false,
        }
    }

    /// A framework failure: origin `"netsvc"` and the standard description of `error`.
    pub fn netsvc(error: i32, details: impl Into<String>) -> Self {
        Self::new(error, description_of(error), NETSVC_ORIGIN, details)
    }

    /// 46: there is no such service.
    pub fn service_unavailable(details: impl Into<String>) -> Self {
        Self::netsvc(codes::SERVICE_UNAVAILABLE, details)
    }

    /// 49: the caller's user may not call this service.
    pub fn not_authorised(details: impl Into<String>) -> Self {
        Self::netsvc(codes::NOT_AUTHORISED, details)
    }

    /// 47: no response within the timeout.
    pub fn timeout(after: std::time::Duration) -> Self {
        Self::netsvc(
            codes::REQUEST_TIMEOUT,
            format!("No response within {:.3} s.", after.as_secs_f64()),
        )
    }

    /// 55: the service does not export `method`.
    pub fn method_unavailable(method: &str) -> Self {
        Self::netsvc(
            codes::METHOD_UNAVAILABLE,
            format!("Method {method:?} is not exported by this service."),
        )
    }

    /// 56: the arguments do not fit the method.
    pub fn parameters_incorrect(details: impl Into<String>) -> Self {
        Self::netsvc(codes::PARAMETERS_INCORRECT, details)
    }

    /// 56 with the original system's wording for a wrong argument count, given the accepted
    /// range `min..=max` (`max == None`: any number from `min` on).
    pub fn argument_count(min: usize, max: Option<usize>, received: usize) -> Self {
        let expected = match max {
            Some(max) if max == min => format!("{min}"),
            Some(max) => format!("{min}-{max}"),
            None => format!("{min} or more"),
        };
        Self::parameters_incorrect(format!(
            "Expected {expected} arguments, received {received}."
        ))
    }

    /// 57: the method failed.
    pub fn application_error(details: impl Into<String>) -> Self {
        Self::netsvc(codes::APPLICATION_ERROR, details)
    }

    /// 57: the service went away before it responded.
    pub fn withdrawn() -> Self {
        Self::withdrawn_because("")
    }

    /// 57: the service went away before it responded, with what is known of why (for
    /// example that the connection toward it was lost).
    pub(crate) fn withdrawn_because(why: &str) -> Self {
        let details = match why {
            "" => WITHDRAWN_DETAILS.to_owned(),
            why => format!("{WITHDRAWN_DETAILS} ({why})"),
        };
        Self {
            withdrawn: true,
            ..Self::application_error(details)
        }
    }

    /// The failure a FAILURE frame carries.
    pub(crate) fn from_wire(frame: &netsvc_proto::wire::frame::Failure) -> Self {
        Self {
            withdrawn: frame.withdrawn,
            ..Self::new(
                frame.error,
                frame.description.as_str(),
                frame.origin.as_str(),
                frame.details.as_str(),
            )
        }
    }

    /// 51: the link toward the service is congested, so the request was not sent.
    pub(crate) fn link_congested() -> Self {
        Self::netsvc(
            codes::RESOURCE_UNAVAILABLE,
            "The exchange link toward the service is congested; the request was not sent.",
        )
    }

    /// 42: the request is larger than the next process on its way accepts.
    pub(crate) fn request_too_large(size: usize, limit: usize) -> Self {
        Self::netsvc(
            codes::REQUEST_ENCODING_ERROR,
            format!(
                "The request is {size} bytes, over the frame limit of {limit} bytes of the \
                 link toward the service; it was not sent."
            ),
        )
    }

    /// 52: the response is larger than the link back to the caller accepts.
    pub(crate) fn response_too_large(size: usize, limit: usize) -> Self {
        Self::netsvc(
            codes::RESPONSE_ENCODING_ERROR,
            format!(
                "The response is {size} bytes, over the frame limit of {limit} bytes of the \
                 link toward the caller; it was not sent."
            ),
        )
    }

    /// Whether this is the failure of a service that went away before responding.
    pub fn is_withdrawn(&self) -> bool {
        self.withdrawn
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        if self.withdrawn {
            return FailureKind::Withdrawn;
        }
        if self.origin != NETSVC_ORIGIN {
            return FailureKind::Application(self.error);
        }
        match self.error {
            codes::SERVICE_UNAVAILABLE => FailureKind::ServiceUnavailable,
            codes::REQUEST_TIMEOUT => FailureKind::Timeout,
            codes::REQUEST_ABORTED => FailureKind::Aborted,
            codes::NOT_AUTHORISED => FailureKind::NotAuthorised,
            codes::RESOURCE_UNAVAILABLE => FailureKind::Busy,
            codes::REQUEST_ENCODING_ERROR | codes::RESPONSE_ENCODING_ERROR => FailureKind::Encoding,
            codes::REQUEST_DECODING_ERROR | codes::RESPONSE_DECODING_ERROR => FailureKind::Decoding,
            codes::METHOD_UNAVAILABLE => FailureKind::MethodUnavailable,
            codes::PARAMETERS_INCORRECT => FailureKind::BadArguments,
            codes::APPLICATION_ERROR => FailureKind::MethodFailed,
            other => FailureKind::Other(other),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.origin, self.error, self.description)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_count_wording_matches_the_original() {
        assert_eq!(
            Failure::argument_count(1, Some(2), 3).details,
            "Expected 1-2 arguments, received 3."
        );
        assert_eq!(
            Failure::argument_count(2, Some(2), 0).details,
            "Expected 2 arguments, received 0."
        );
        assert_eq!(
            Failure::argument_count(1, None, 0).details,
            "Expected 1 or more arguments, received 0."
        );
    }

    #[test]
    fn framework_failures_have_origin_netsvc() {
        let f = Failure::withdrawn();
        assert_eq!(f.error, 57);
        assert_eq!(f.description, "Application Error");
        assert_eq!(f.origin, "netsvc");
        assert!(f.is_withdrawn());
        assert_eq!(f.kind(), FailureKind::Withdrawn);
        assert_eq!(
            Failure::application_error("boom").kind(),
            FailureKind::MethodFailed
        );
        assert!(!Failure::new(57, "x", "netsvc", WITHDRAWN_DETAILS).is_withdrawn());
        assert_eq!(
            f.to_string(),
            "netsvc 57 (Application Error): Service was withdrawn before response received."
        );
    }
}
