//! `target-emulator`: an iSCSI target (RFC 7143) with SCSI block device emulation, built to
//! answer GET LBA STATUS(16) and (32) for thin and delta volumes.
//!
//! Layers, top to bottom:
//! - [`target`]: the TCP listener and the export table (target name → LUN), changeable while
//!   sessions run.
//! - [`session`]: one task per connection: login, then the full-feature phase (sequence numbers,
//!   R2T/Data-Out, Data-In, task management).
//! - [`login`]: pure login negotiation and CHAP.
//! - [`scsi`]: pure CDB parsing, command handlers and sense data over a [`lun::Lun`].
//! - [`pdu`]: the pure PDU codec.
//!
//! Two modules exist only behind cargo features: `initiator` (feature `initiator`) is a small
//! client on the same codec, for tests and for `blockdelta scan`, which need what libiscsi
//! cannot send (32-byte CDBs through the Extended-CDB AHS);
//! `fuzzing` (feature `fuzzing`) holds the entry points of the `cargo fuzz` targets in `fuzz/`.
//!
//! Only what other crates name is public: [`target`] (name checks the service crate shares),
//! [`scsi::lba_status`] (its decoder, for initiators reading GET LBA STATUS answers) and the
//! items re-exported below. The rest is private to the crate.

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(feature = "initiator")]
pub mod initiator;
mod login;
mod lun;
mod pdu;
pub mod scsi;
mod session;
pub mod sparse;
pub mod target;

pub use login::Authentication;
pub use login::chap::ChapCredentials;
pub use lun::{FileLun, Lun, LunError, Provisioning};
pub use target::{Export, Target, TargetConfig, TargetError};
