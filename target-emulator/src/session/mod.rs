//! One iSCSI connection from accept to close: the login phase, then the full-feature phase.
//!
//! A session here has exactly one connection (MaxConnections=1, ErrorRecoveryLevel=0), so the
//! session and connection state live together in one `Session` ([`state`]). Commands execute in
//! CmdSN order; a write waits in `writes` until its data has arrived (immediate, unsolicited,
//! then R2T by R2T), while later commands go on. Lun I/O runs off the reactor ([`tasks`]).
//!
//! This module runs the login phase and hands the connection to [`dispatch`]'s read loop;
//! [`tasks`] handles SCSI commands and their data, [`management`] the other PDUs, [`registry`]
//! is what the session needs from the target.

pub mod connection;
mod dispatch;
mod management;
mod registry;
mod state;
mod tasks;

pub use registry::{ExportLease, Registry};

use crate::login::{Directory, Established, Login, SessionType, Step, negotiation::TargetLimits};
use crate::pdu::Request;
use crate::scsi::Nexus;
use connection::{Connection, FrameError};
use state::{COMMAND_WINDOW, Session};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A login that has not completed in this time is dropped.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

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
