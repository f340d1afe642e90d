//! `blockdelta scan iscsi://HOST:PORT/IQN/LUN`: Oracle's step 3 as one command (DESIGN.md
//! §13). The medium is walked with GET LBA STATUS(32) in scans of at most 1 GiB
//! ([`walk`]); the changed extents are listed, or read (READ(16)) into a sparse image at
//! their offsets. The iSCSI form uses the built-in initiator, with CHAP when given.
//! (Block devices through SG_IO are the rest of the issue.)

mod iscsi;
pub mod walk;

pub use iscsi::{INITIATOR_NAME, IscsiTarget, ScanOutcome, scan_iscsi};

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(
        "{0}: expected iscsi://HOST:PORT/IQN/LUN (block devices through SG_IO are not built yet)"
    )]
    BadTarget(String),
    #[error("iSCSI: {0}")]
    Iscsi(String),
    #[error(
        "{command} failed: status {status:#04x}, sense key {key:#x} ASC/ASCQ {asc:#04x}/{ascq:#04x}"
    )]
    Check {
        command: &'static str,
        status: u8,
        key: u8,
        asc: u8,
        ascq: u8,
    },
    #[error("{0}")]
    Answer(String),
    #[error(transparent)]
    Walk(#[from] walk::WalkError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
