//! iSCSI PDU codec (RFC 7143 §11): bytes in, typed values out, and back.
//!
//! This module owns the wire layout of every PDU the target and the test initiator exchange. It
//! never touches a socket, a clock or a lock: [`crate::session::connection`] reads whole PDUs
//! off the wire into a [`RawPdu`] (header segments, data segment, digests checked) and the typed
//! structs here turn those into values. Every decoder is total: malformed bytes give a
//! [`PduError`], never a panic (fuzzed by `fuzz/fuzz_targets/pdu.rs`).

mod bhs;
mod digest;
mod keys;
mod types;

pub use bhs::{BHS_LEN, Framing, FramingError, RawPdu, frame, padded_len};
pub use digest::crc32c;
pub use keys::{TextKeys, encode_keys, parse_keys};
pub use types::*;

/// A PDU that could not be decoded. The connection answers it with a Reject PDU or, when even the
/// framing is lost, drops the connection (RFC 7143 §6.6, "format errors").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("unknown or unexpected opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    #[error("data segment of {0} bytes exceeds the limit of {1}")]
    DataSegmentTooLong(usize, usize),
    #[error("malformed additional header segment: {0}")]
    BadAhs(&'static str),
    #[error("malformed {pdu}: {reason}")]
    Malformed {
        pdu: &'static str,
        reason: &'static str,
    },
    #[error("text segment is not key=value pairs: {0}")]
    BadText(&'static str),
}
