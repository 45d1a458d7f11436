//! The values every layer passes around: identities and ids, bindings, failures and errors,
//! report payloads, and the events the core hands to applications (announcements, reports,
//! subscription changes). Nothing here holds shared state or runs a task; everything above
//! builds on it.

pub(crate) mod announcement;
pub(crate) mod binding;
pub(crate) mod collections;
pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod failure;
pub(crate) mod grant;
pub(crate) mod identity;
pub(crate) mod ids;
pub(crate) mod payload;
pub(crate) mod report;
pub(crate) mod stats;
