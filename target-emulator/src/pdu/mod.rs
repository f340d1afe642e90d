//! iSCSI PDU codec (RFC 7143 §11): bytes in, typed values out, and back.
//!
//! This module owns the wire layout of every PDU the target and the test initiator exchange. It
//! never touches a socket, a clock or a lock: [`crate::session::connection`] reads whole PDUs
//! off the wire into a [`RawPdu`] (header segments, data segment, digests checked) and the typed
//! structs here turn those into values. Every decoder is total: malformed bytes give a
//! [`PduError`], never a panic (fuzzed by `fuzz/fuzz_targets/pdu.rs`).
//!
//! One module per PDU family of RFC 7143 §11, each with `from_raw` (total) and `to_raw` and a
//! property test that `from_raw(to_raw(x)) == x`:
//! - [`bhs`]: the BHS and framing of a whole PDU (§11.2); [`fields`]: the field offsets most
//!   PDUs share, named once for encoder and decoder.
//! - [`scsi`]: SCSI Command and Response (§11.3–11.4); [`data`]: Data-In, Data-Out and R2T
//!   (§11.7–11.8); [`task_management`] (§11.5–11.6).
//! - [`login`] (§11.12–11.13), [`text`] (§11.10–11.11) and [`keys`], the `key=value` segments
//!   both carry; [`logout`] (§11.14–11.15); [`nop`] (§11.18–11.19); [`reject`] (§11.17).
//! - [`request`]: every initiator → target PDU as one enum.

// The codec is complete in both directions, and its round-trip tests hold it to that. The
// target itself decodes only requests and encodes only responses; the other halves are for the
// initiator and the fuzz targets, which production builds leave out. With both features on
// (`clippy --all-features`) every item has a user and dead code is reported again.
#![cfg_attr(
    not(all(feature = "initiator", feature = "fuzzing")),
    allow(dead_code, unused_imports)
)]

mod bhs;
mod data;
mod digest;
mod error;
mod fields;
mod keys;
mod login;
mod logout;
mod nop;
pub mod opcode;
mod reject;
mod request;
mod scsi;
mod task_management;
mod text;

pub use bhs::{BHS_LEN, Framing, FramingError, RawPdu, frame, padded_len};
pub use data::{DataIn, DataOut, ReadyToTransfer};
pub use digest::crc32c;
pub use error::PduError;
pub use fields::RESERVED_TAG;
pub use keys::{encode_keys, parse_keys};
pub use login::{LoginRequest, LoginResponse, Stage};
pub use logout::{LogoutRequest, LogoutResponse};
pub use nop::{NopIn, NopOut};
pub use reject::{Reject, reject_reason};
pub use request::Request;
pub use scsi::{Residual, ScsiCommand, ScsiResponse};
pub use task_management::{TaskMgmtRequest, TaskMgmtResponse};
pub use text::{TextRequest, TextResponse};
