//! The full-feature phase's read loop: each PDU off the connection goes to its handler
//! ([`super::tasks`] for SCSI, [`super::management`] for the rest), or is answered with a Reject.

use super::connection::FrameError;
use super::state::{Flow, Session};
use crate::pdu::{PduError, RawPdu, Reject, Request, reject_reason};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    pub(super) async fn run(&mut self) -> String {
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

    pub(super) async fn reject(&mut self, raw: &RawPdu, reason: u8) -> std::io::Result<()> {
        let r = Reject {
            reason,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            rejected_bhs: raw.bhs,
        };
        self.conn.write_pdu(&r.to_raw()).await
    }
}
