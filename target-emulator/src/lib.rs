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
//! [`initiator`] is a small client on the same codec, for tests and tools that need what
//! libiscsi cannot send (32-byte CDBs through the Extended-CDB AHS). [`fuzzing`] holds the
//! entry points of the `cargo fuzz` targets in `fuzz/`.

pub mod fuzzing;
pub mod initiator;
pub mod login;
pub mod lun;
pub mod pdu;
pub mod scsi;
pub mod session;
pub mod target;

pub use login::Authentication;
pub use login::chap::ChapCredentials;
pub use lun::{FileLun, Lun, LunError, Provisioning};
pub use target::{Export, Target, TargetConfig, TargetError};
