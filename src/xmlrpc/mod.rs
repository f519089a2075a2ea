//! XML-RPC in Koji's dialect (see docs/hub.md and docs/adr/0001-xmlrpc-codec.md).
//!
//! - [`Value`]: nil, ints (`i4`/`int`/`i8`), double, boolean, string, base64, the
//!   hub's datetime strings, arrays and structs;
//! - [`encode`]: method calls and responses written exactly as Python's
//!   `xmlrpc.client` (with Koji's `ExtendedMarshaller`) writes them, so a task result
//!   we send to `host.closeTask` is byte-for-byte what kojid would have sent;
//! - [`decode`]: a strict, DTD-free parser on quick-xml;
//! - [`Fault`] and [`FaultKind`]: Koji's fault codes and exception hierarchy;
//! - [`encode_args`]/[`decode_args`]: Koji's `__starstar` keyword-argument convention.

pub mod decode;
pub mod encode;
pub mod fault;
pub mod value;

pub use decode::{decode_call, decode_response, DecodeError, MethodCall, MethodResponse};
pub use encode::{encode_call, encode_fault_response, encode_response};
pub use fault::{Fault, FaultKind};
pub use value::{decode_args, encode_args, Struct, Value};
