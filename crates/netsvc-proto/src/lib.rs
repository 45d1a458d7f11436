//! The sans-IO core of netsvc.
//!
//! Nothing in this crate touches a socket, a clock or a task: it holds the data types that
//! every netsvc process agrees on and pure functions over them, so they can be unit-tested,
//! property-tested and fuzzed without a runtime.
//!
//! - [`value`]: the dynamic [`Value`] carried in requests, responses and reports, its compact
//!   binary encoding (MessagePack), its JSON mapping and the serde bridge for typed structs.
//! - [`pattern`]: subject [`Pattern`]s (`*` and `?` globs) and the [`PatternIndex`] that finds
//!   every pattern matching a subject without scanning them all.
//! - [`names`]: validation of service names, group names, subjects and patterns.
//! - [`wire`]: the frames of the native exchange protocol and their sans-IO codec
//!   (specified in `docs/PROTOCOL.md`).

pub mod names;
pub mod pattern;
pub mod value;
pub mod wire;

pub use pattern::{Pattern, PatternIndex};
pub use value::Value;
