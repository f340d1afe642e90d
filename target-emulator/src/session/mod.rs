//! One iSCSI connection from accept to close: the login phase, then the full-feature phase.
//!
//! A session here has exactly one connection (MaxConnections=1, ErrorRecoveryLevel=0), so the
//! session and connection state live together in [`Session`]. Commands execute in CmdSN order;
//! a write waits in `writes` until its data has arrived (immediate, unsolicited, then R2T by
//! R2T), while later commands go on. Lun I/O runs through [`io_blocking`], off the reactor.

pub mod connection;
mod management;
mod tasks;

use crate::login::{Directory, Established, Login, SessionType, Step, negotiation::TargetLimits};
use crate::lun::Lun;
use crate::pdu::{PduError, RawPdu, Reject, Request, reject_reason};
use crate::scsi::{Nexus, UnitState};
use connection::{Connection, FrameError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Commands the initiator may have outstanding: MaxCmdSN = ExpCmdSN + WINDOW − 1.
pub const COMMAND_WINDOW: u32 = 32;
/// A login that has not completed in this time is dropped.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a session needs from the target: the export table.
pub trait Registry: Directory + Send + Sync {
    /// The LUN behind a target name, for the life of one session.
    fn export(&self, target_name: &str) -> Option<ExportLease>;
    /// Target names an initiator may see for `SendTargets=<value>` (RFC 7143 §12.3).
    fn send_targets(&self, initiator: &str, value: &str, current: Option<&str>) -> Vec<String>;
}

/// A session's hold on an export: the LUN and the state it shares with the export's other
/// sessions (reservations), a token cancelled when the export is removed, and a count of
/// sessions that drops when the lease does.
pub struct ExportLease {
    pub lun: Arc<dyn Lun>,
    pub state: Arc<UnitState>,
    pub closed: CancellationToken,
    pub active: Arc<std::sync::atomic::AtomicUsize>,
}

impl ExportLease {
    pub fn new(
        lun: Arc<dyn Lun>,
        state: Arc<UnitState>,
        closed: CancellationToken,
        active: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Self {
        active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self {
            lun,
            state,
            closed,
            active,
        }
    }
}

impl Drop for ExportLease {
    fn drop(&mut self) {
        self.active
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Serial-number arithmetic (RFC 1982) for CmdSN/StatSN comparisons.
pub(crate) fn sn_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Runs `f` (Lun I/O, possibly blocking on a disk) without stalling other tasks on this
/// worker: on a multi-threaded runtime the worker hands its other tasks away first.
pub fn io_blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Serves one accepted connection until logout, error or export removal. `portal` is the
/// `host:port` SendTargets answers as each target's TargetAddress.
pub async fn serve<R, W>(
    read: R,
    write: W,
    peer: SocketAddr,
    portal: String,
    registry: Arc<dyn Registry>,
    tsih: u16,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut conn = Connection::new(read, write);
    let limits = TargetLimits::default();
    let established = match tokio::time::timeout(
        LOGIN_TIMEOUT,
        login_phase(&mut conn, &*registry, limits.clone(), tsih),
    )
    .await
    {
        Ok(Ok(Some(e))) => e,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            debug!(%peer, "connection closed during login: {e}");
            return;
        }
        Err(_) => {
            warn!(%peer, "login timed out");
            return;
        }
    };
    let (est, stat_sn, exp_cmd_sn) = established;
    let lease = match est.session_type {
        SessionType::Discovery => None,
        SessionType::Normal => match registry.export(&est.target_name) {
            Some(lease) => Some(lease),
            None => return,
        },
    };
    let lun = lease.as_ref().map(|l| l.lun.clone());
    let unit = lease.as_ref().map(|l| l.state.clone());
    // The I_T nexus this session is (RFC 7143 §4.2.7.1): what reservations are keyed by.
    let nexus = Nexus::new(est.initiator_name.clone(), est.isid);
    if let Some(u) = &unit {
        u.session_started(&nexus);
    }
    let export_closed = lease.as_ref().map(|l| l.closed.clone()).unwrap_or_default();
    info!(
        %peer, initiator = %est.initiator_name, target = %est.target_name, kind = ?est.session_type,
        header_digest = est.params.header_digest, data_digest = est.params.data_digest,
        "login"
    );
    conn.header_digest = est.params.header_digest;
    conn.data_digest = est.params.data_digest;
    conn.max_recv_data = est.params.target_max_recv_data_segment_length as usize;
    let mut session = Session {
        conn,
        est,
        lun,
        unit,
        nexus,
        portal,
        registry,
        limits: crate::scsi::Limits::default(),
        stat_sn,
        exp_cmd_sn,
        queued: HashMap::new(),
        writes: HashMap::new(),
        discarded_itts: Vec::new(),
        next_ttt: 1,
        text_continuation: None,
        peer,
    };
    let reason = tokio::select! {
        r = session.run() => r,
        _ = export_closed.cancelled() => "export removed".to_string(),
        _ = shutdown.cancelled() => "target shutting down".to_string(),
    };
    if let Some(u) = &session.unit {
        u.session_ended(&session.nexus);
    }
    info!(%peer, initiator = %session.est.initiator_name, target = %session.est.target_name, "logout: {reason}");
}

type LoginOutcome = Option<(Established, u32, u32)>;

async fn login_phase<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    conn: &mut Connection<R, W>,
    dir: &(dyn Directory + Sync),
    limits: TargetLimits,
    tsih: u16,
) -> Result<LoginOutcome, FrameError> {
    let mut login = Login::new(limits, tsih);
    let mut stat_sn: Option<u32> = None;
    loop {
        let raw = conn.read_pdu().await?;
        let req = match Request::from_raw(&raw) {
            Ok(Request::Login(r)) => r,
            Ok(_) | Err(_) => {
                warn!(
                    "non-login PDU (opcode 0x{:02x}) during login; closing",
                    raw.opcode()
                );
                return Ok(None);
            }
        };
        let sn = *stat_sn.get_or_insert(req.exp_stat_sn);
        let step = login.step(&req, dir);
        let (mut resp, done, failure) = match step {
            Step::Continue(r) => (r, None, None),
            Step::Complete(r, est) => (r, Some(est), None),
            Step::Fail(r, why) => (r, None, Some(why)),
        };
        debug!(
            csg = ?req.csg, nsg = ?req.nsg, transit = req.transit,
            request = %keys_for_log(&req.data), response = %keys_for_log(&resp.data),
            "login step"
        );
        resp.stat_sn = sn;
        resp.exp_cmd_sn = req.cmd_sn;
        resp.max_cmd_sn = req.cmd_sn.wrapping_add(COMMAND_WINDOW - 1);
        stat_sn = Some(sn.wrapping_add(1));
        conn.write_pdu(&resp.to_raw()).await?;
        conn.flush().await?;
        if let Some(why) = failure {
            warn!(
                "login refused ({:02x}/{:02x}): {why}",
                resp.status_class, resp.status_detail
            );
            return Ok(None);
        }
        if let Some(est) = done {
            return Ok(Some((*est, sn.wrapping_add(1), req.cmd_sn)));
        }
    }
}

/// Login text as `Key=Value` pairs for the debug log, CHAP challenges and responses
/// blanked: enough to see how an initiator negotiates, nothing to replay.
fn keys_for_log(data: &[u8]) -> String {
    data.split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            match kv.split_once('=') {
                Some((k, _)) if matches!(k, "CHAP_C" | "CHAP_R") => format!("{k}=…"),
                _ => kv.into_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A command received ahead of ExpCmdSN, held until the gap closes, or a CmdSN an ABORT TASK
/// consumed before it arrived.
enum Queued {
    Command(crate::pdu::ScsiCommand),
    Aborted,
}

pub(crate) struct Session<R, W> {
    conn: Connection<R, W>,
    est: Established,
    lun: Option<Arc<dyn Lun>>,
    /// The logical unit's shared state; `None` in discovery sessions.
    unit: Option<Arc<UnitState>>,
    nexus: Nexus,
    /// `host:port` for SendTargets' TargetAddress.
    portal: String,
    registry: Arc<dyn Registry>,
    limits: crate::scsi::Limits,
    stat_sn: u32,
    exp_cmd_sn: u32,
    queued: HashMap<u32, Queued>,
    writes: HashMap<u32, tasks::WriteTask>,
    /// Tasks that failed before their unsolicited data arrived: that data is dropped quietly.
    discarded_itts: Vec<u32>,
    next_ttt: u32,
    text_continuation: Option<management::TextContinuation>,
    peer: SocketAddr,
}

/// Whether the connection goes on after a PDU.
pub(crate) enum Flow {
    Continue,
    Close(String),
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn.wrapping_add(COMMAND_WINDOW - 1)
    }

    /// The StatSN for the next status-bearing PDU.
    fn take_stat_sn(&mut self) -> u32 {
        let sn = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        sn
    }

    async fn run(&mut self) -> String {
        loop {
            let raw = match self.conn.read_pdu().await {
                Ok(raw) => raw,
                Err(FrameError::Closed) => return "connection closed".into(),
                Err(FrameError::DataDigest(raw)) => {
                    warn!(peer = %self.peer, "data digest error; PDU rejected");
                    if self
                        .reject(&raw, reject_reason::DATA_DIGEST_ERROR)
                        .await
                        .is_err()
                    {
                        return "write failed".into();
                    }
                    continue;
                }
                Err(e) => return format!("connection dropped: {e}"),
            };
            let flow = match Request::from_raw(&raw) {
                Ok(req) => self.dispatch(req, &raw).await,
                Err(e) => self.rejected(&raw, e).await,
            };
            let flow = match flow {
                Ok(f) => f,
                Err(e) => return format!("write failed: {e}"),
            };
            if let Flow::Close(why) = flow {
                let _ = self.conn.flush().await;
                return why;
            }
            if self.conn.input_drained()
                && let Err(e) = self.conn.flush().await
            {
                return format!("write failed: {e}");
            }
        }
    }

    async fn dispatch(&mut self, req: Request, raw: &RawPdu) -> std::io::Result<Flow> {
        match req {
            Request::ScsiCommand(cmd) => self.on_command(cmd).await,
            Request::DataOut(d) => self.on_data_out(d).await,
            Request::NopOut(n) => self.on_nop(n).await,
            Request::TaskMgmt(t) => self.on_task_management(t).await,
            Request::Text(t) => self.on_text(t).await,
            Request::Logout(l) => self.on_logout(l).await,
            Request::Login(_) => {
                self.reject(raw, reject_reason::PROTOCOL_ERROR).await?;
                Ok(Flow::Continue)
            }
            Request::Snack => {
                self.reject(raw, reject_reason::SNACK_REJECT).await?;
                Ok(Flow::Continue)
            }
        }
    }

    async fn rejected(&mut self, raw: &RawPdu, e: PduError) -> std::io::Result<Flow> {
        warn!(peer = %self.peer, "rejected PDU: {e}");
        let reason = match e {
            PduError::UnknownOpcode(_) => reject_reason::COMMAND_NOT_SUPPORTED,
            _ => reject_reason::INVALID_PDU_FIELD,
        };
        self.reject(raw, reason).await?;
        Ok(Flow::Continue)
    }

    async fn reject(&mut self, raw: &RawPdu, reason: u8) -> std::io::Result<()> {
        let r = Reject {
            reason,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            rejected_bhs: raw.bhs,
        };
        self.conn.write_pdu(&r.to_raw()).await
    }

    /// Records that the non-immediate PDU with `cmd_sn` has been received, if it is the next
    /// one, and releases any queued commands that follow it. Returns false if `cmd_sn` lies
    /// outside the window (RFC 7143 §4.2.2.1: such a PDU is silently ignored).
    fn accept_cmd_sn(&mut self, cmd_sn: u32) -> bool {
        if sn_lt(cmd_sn, self.exp_cmd_sn) || sn_lt(self.max_cmd_sn(), cmd_sn) {
            return false;
        }
        if cmd_sn == self.exp_cmd_sn {
            self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        }
        true
    }
}
