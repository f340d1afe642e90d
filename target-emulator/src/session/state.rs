//! What one session keeps through its full-feature phase: the connection, the sequence numbers
//! and command window (RFC 7143 §4.2.2), commands queued ahead of ExpCmdSN, writes still
//! collecting data, and a text response still being sent. The handlers in the sibling modules
//! ([`super::dispatch`], [`super::tasks`], [`super::management`]) change it.

use super::connection::Connection;
use super::registry::Registry;
use crate::login::Established;
use crate::lun::Lun;
use crate::pdu::ScsiCommand;
use crate::scsi::{Limits, Nexus, Prepared, UnitState};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Commands the initiator may have outstanding: MaxCmdSN = ExpCmdSN + WINDOW − 1.
pub(super) const COMMAND_WINDOW: u32 = 32;

/// Serial-number arithmetic (RFC 1982) for CmdSN/StatSN comparisons.
pub(super) fn sn_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// A command received ahead of ExpCmdSN, held until the gap closes, or a CmdSN an ABORT TASK
/// consumed before it arrived.
pub(super) enum Queued {
    Command(ScsiCommand),
    Aborted,
}

/// One session and its one connection, from login to close.
pub(super) struct Session<R, W> {
    pub(super) conn: Connection<R, W>,
    pub(super) est: Established,
    pub(super) lun: Option<Arc<dyn Lun>>,
    /// The logical unit's shared state; `None` in discovery sessions.
    pub(super) unit: Option<Arc<UnitState>>,
    pub(super) nexus: Nexus,
    /// `host:port` for SendTargets' TargetAddress.
    pub(super) portal: String,
    pub(super) registry: Arc<dyn Registry>,
    pub(super) limits: Limits,
    pub(super) stat_sn: u32,
    pub(super) exp_cmd_sn: u32,
    pub(super) queued: HashMap<u32, Queued>,
    pub(super) writes: HashMap<u32, WriteTask>,
    /// Tasks that failed before their unsolicited data arrived: that data is dropped quietly.
    pub(super) discarded_itts: Vec<u32>,
    pub(super) next_ttt: u32,
    pub(super) text_continuation: Option<TextContinuation>,
    pub(super) peer: SocketAddr,
}

/// Whether the connection goes on after a PDU.
pub(super) enum Flow {
    Continue,
    Close(String),
}

/// A write whose data is still arriving.
pub(super) struct WriteTask {
    pub(super) cmd: ScsiCommand,
    pub(super) prepared: Prepared,
    /// Bytes we will take: the CDB's need, capped by ExpectedDataTransferLength.
    pub(super) needed: usize,
    /// Bytes the CDB asked for, for the residual.
    pub(super) requested: usize,
    pub(super) buffer: Vec<u8>,
    /// Unsolicited data (immediate + Data-Out with the reserved TTT) has ended.
    pub(super) unsolicited_done: bool,
    /// The R2T we sent and still expect data for: (TTT, end offset, next DataSN).
    pub(super) r2t: Option<(u32, usize, u32)>,
    pub(super) next_unsolicited_data_sn: u32,
    pub(super) r2t_sn: u32,
}

/// The rest of a text response too long for one PDU, sent when the initiator asks (C bit).
pub(super) struct TextContinuation {
    pub(super) itt: u32,
    pub(super) ttt: u32,
    pub(super) rest: Vec<u8>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    pub(super) fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn.wrapping_add(COMMAND_WINDOW - 1)
    }

    /// The StatSN for the next status-bearing PDU.
    pub(super) fn take_stat_sn(&mut self) -> u32 {
        let sn = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        sn
    }

    /// Records that the non-immediate PDU with `cmd_sn` has been received, if it is the next
    /// one, and releases any queued commands that follow it. Returns false if `cmd_sn` lies
    /// outside the window (RFC 7143 §4.2.2.1: such a PDU is silently ignored).
    pub(super) fn accept_cmd_sn(&mut self, cmd_sn: u32) -> bool {
        if sn_lt(cmd_sn, self.exp_cmd_sn) || sn_lt(self.max_cmd_sn(), cmd_sn) {
            return false;
        }
        if cmd_sn == self.exp_cmd_sn {
            self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        }
        true
    }
}
