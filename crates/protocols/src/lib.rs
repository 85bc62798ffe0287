//! Pure protocol parsers: bytes in, facts out, no I/O. Each says when it needs more bytes,
//! never panics on any input, and is property-tested.

pub mod connect;
pub mod fix;
pub mod mq;
pub mod proxy;
pub mod tls;
pub mod trace_context;
