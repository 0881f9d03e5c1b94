//! The wire: length-prefixed frames and request/response headers, read without copying.
//!
//! Message bodies are decoded with the `kafka-protocol` crate, and only for the APIs fairlead
//! inspects (see `router` and `rewrite`); everything else stays an opaque `Bytes` frame.

pub mod endpoints;
pub mod frame;
pub mod header;
pub mod message;
pub mod sanity;

pub use frame::LEN_PREFIX;
