//! What a PDU decoder answers when the bytes are not a PDU it can accept.

/// A PDU that could not be decoded. The connection answers it with a Reject PDU or, when even the
/// framing is lost, drops the connection (RFC 7143 §6.6, "format errors").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("unknown or unexpected opcode 0x{0:02x}")]
    UnknownOpcode(u8),
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
