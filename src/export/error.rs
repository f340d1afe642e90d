//! Why a volume cannot be attached, detached or deleted, naming the volume and
//! its target. Mapped to gRPC codes in `api::status`, with the layers below it.

use target_emulator::TargetError;

use crate::delta::DeltaError;
use crate::engine::CatalogError;
use crate::engine::EngineError;
use crate::kinds::Status;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A delta volume's source no longer makes a delta (a backup changed state).
    #[error(transparent)]
    Delta(#[from] DeltaError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The built-in target refused the export; its error is kept whole here, so the
    /// layers above name only this one.
    #[error("{0}")]
    TargetNameInvalid(TargetError),
    #[error("{0}")]
    TargetNameExported(TargetError),
    #[error("volume {volume} is already attached as {target}")]
    AlreadyAttached { volume: String, target: String },
    #[error("volume {0} is not attached")]
    NotAttached(String),
    #[error("volume {volume} is {status}: only an available volume can be attached")]
    NotAttachable { volume: String, status: Status },
    #[error(
        "volume {volume} has {sessions} iSCSI session(s) logged in to {target}: log them out first, or use --force to end them"
    )]
    SessionsActive {
        volume: String,
        target: String,
        sessions: u32,
    },
    #[error("volume {volume} is attached as {target}: detach it first, or use --force")]
    Attached { volume: String, target: String },
    /// The call must be made on the node that serves (or is to serve) the attachment: its
    /// target is the one that exports it.
    #[error(
        "volume {volume}'s attachment is on node {node}: send the call to that node at {address} (the CLI's --node does)"
    )]
    OnOtherNode {
        volume: String,
        node: String,
        address: String,
    },
    #[error("no node named {0:?} is in this cluster (see `blockdelta service list`)")]
    UnknownNode(String),
    #[error("logical block size {0} is not supported: use 512 or 4096")]
    BlockSize(u32),
    #[error(
        "initiator name {0:?} is not an iSCSI name (iqn., eui. or naa.; lower case; at most 223 bytes)"
    )]
    InvalidInitiator(String),
    #[error("cannot open volume {volume} at {path}: {source}")]
    Open {
        volume: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<TargetError> for ExportError {
    fn from(e: TargetError) -> Self {
        match e {
            TargetError::InvalidName(_) => ExportError::TargetNameInvalid(e),
            TargetError::AlreadyExported(_) => ExportError::TargetNameExported(e),
        }
    }
}
