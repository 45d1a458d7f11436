//! The live dashboard at `/`: one static page shipped inside the binary (no CDN, no build
//! step), which draws the registry from `/api/events` and the stats from `/api/stats`.
//!
//! The page runs no inline script or style, so its Content-Security-Policy allows only
//! this origin's files and requests: a name or reason that reached the registry is only
//! ever text on the page.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::server::reply;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

const POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
);

/// The page's file at `path`, if it is one.
pub(crate) fn file(path: &str) -> Option<Response> {
    let (content_type, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX),
        "/dashboard.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/dashboard.css" => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    let mut response = reply(StatusCode::OK, content_type, body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, POLICY);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Small, and changed by every release: always revalidated.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(response)
}
