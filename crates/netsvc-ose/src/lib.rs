//! The original OSE exchange protocol for netsvc.
//!
//! Original OSE processes join a netsvc exchange, and netsvc processes join an OSE exchange,
//! so that a system can move to netsvc one process at a time. The protocol is sans-IO here
//! ([`frame`] splits and builds the original's frames, [`message`] reads and writes its
//! message catalogue, [`ids`] makes identifiers in its formats); values travel in the
//! original's NET-RPC XML (`netsvc_gateway::codec::netrpc`, shared with the HTTP gateway).
//! The [`bridge`] (feature `bridge`, on by default) runs OSE connections for a netsvc
//! [`Runtime`](netsvc::Runtime). See docs/PROTOCOL.md, "The OSE dialect".

#[cfg(feature = "bridge")]
pub mod bridge;
pub mod frame;
pub mod ids;
pub mod message;

pub use frame::{Envelope, FrameDecoder, FrameError};
pub use message::{ExchangeRole, Message, MessageError, Outbound, ServiceRecord};
