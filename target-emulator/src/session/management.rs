//! The non-SCSI PDUs of the full-feature phase: NOP, task management, text (SendTargets) and
//! logout.

use super::state::{Flow, Queued, Session, TextContinuation, sn_lt};
use crate::pdu::{
    LogoutRequest, LogoutResponse, NopIn, NopOut, RESERVED_TAG, TaskMgmtRequest, TaskMgmtResponse,
    TextRequest, TextResponse, encode_keys, parse_keys,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

/// Task management functions (RFC 7143 §11.5.1) and responses (§11.6.1).
mod tmf {
    pub const ABORT_TASK: u8 = 1;
    pub const ABORT_TASK_SET: u8 = 2;
    pub const CLEAR_ACA: u8 = 3;
    pub const CLEAR_TASK_SET: u8 = 4;
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    pub const TARGET_WARM_RESET: u8 = 6;
    pub const TARGET_COLD_RESET: u8 = 7;
    pub const TASK_REASSIGN: u8 = 8;

    pub const FUNCTION_COMPLETE: u8 = 0;
    pub const TASK_DOES_NOT_EXIST: u8 = 1;
    pub const LUN_DOES_NOT_EXIST: u8 = 2;
    pub const REASSIGNMENT_NOT_SUPPORTED: u8 = 4;
    pub const FUNCTION_REJECTED: u8 = 255;
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    pub(super) async fn on_nop(&mut self, n: NopOut) -> std::io::Result<Flow> {
        if !n.immediate {
            self.accept_cmd_sn(n.cmd_sn);
            self.release_queued().await?;
        }
        if n.itt == RESERVED_TAG {
            // A reply to our ping, or a one-way NOP: nothing to answer.
            return Ok(Flow::Continue);
        }
        let reply = NopIn {
            lun: n.lun,
            itt: n.itt,
            ttt: RESERVED_TAG,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data: n.data,
        };
        self.conn.write_pdu(&reply.to_raw()).await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn on_task_management(&mut self, t: TaskMgmtRequest) -> std::io::Result<Flow> {
        if !t.immediate {
            self.accept_cmd_sn(t.cmd_sn);
        }
        let lun_ok = t.lun.iter().all(|b| *b == 0);
        let (response, close) = match t.function {
            tmf::ABORT_TASK => {
                if self.abort_task(t.referenced_task_tag) {
                    (tmf::FUNCTION_COMPLETE, false)
                } else if !sn_lt(t.ref_cmd_sn, self.exp_cmd_sn)
                    && !sn_lt(self.max_cmd_sn(), t.ref_cmd_sn)
                    && sn_lt(t.ref_cmd_sn, t.cmd_sn)
                {
                    // Not received yet but inside the window: consider it received
                    // (RFC 7143 §11.6.1 b).
                    self.queued.insert(t.ref_cmd_sn, Queued::Aborted);
                    (tmf::FUNCTION_COMPLETE, false)
                } else {
                    (tmf::TASK_DOES_NOT_EXIST, false)
                }
            }
            tmf::ABORT_TASK_SET | tmf::CLEAR_TASK_SET | tmf::LOGICAL_UNIT_RESET if !lun_ok => {
                (tmf::LUN_DOES_NOT_EXIST, false)
            }
            tmf::ABORT_TASK_SET | tmf::CLEAR_TASK_SET | tmf::CLEAR_ACA => {
                self.abort_all();
                (tmf::FUNCTION_COMPLETE, false)
            }
            tmf::LOGICAL_UNIT_RESET => {
                self.abort_all();
                if let Some(u) = &self.unit {
                    u.logical_unit_reset();
                }
                (tmf::FUNCTION_COMPLETE, false)
            }
            tmf::TARGET_WARM_RESET | tmf::TARGET_COLD_RESET => {
                self.abort_all();
                // One logical unit per target name: a target reset resets just this one.
                if let Some(u) = &self.unit {
                    u.target_reset();
                }
                (tmf::FUNCTION_COMPLETE, t.function == tmf::TARGET_COLD_RESET)
            }
            tmf::TASK_REASSIGN => (tmf::REASSIGNMENT_NOT_SUPPORTED, false),
            _ => (tmf::FUNCTION_REJECTED, false),
        };
        info!(peer = %self.peer, function = t.function, response, "task management");
        let r = TaskMgmtResponse {
            response,
            itt: t.itt,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        };
        self.conn.write_pdu(&r.to_raw()).await?;
        self.release_queued().await?;
        Ok(if close {
            Flow::Close("target cold reset".into())
        } else {
            Flow::Continue
        })
    }

    pub(super) async fn on_text(&mut self, t: TextRequest) -> std::io::Result<Flow> {
        if !t.immediate {
            self.accept_cmd_sn(t.cmd_sn);
        }
        let body = match self.text_continuation.take() {
            Some(c) if c.itt == t.itt && c.ttt == t.ttt => c.rest,
            _ => {
                let keys = match parse_keys(&t.data) {
                    Ok(k) => k,
                    Err(e) => {
                        warn!(peer = %self.peer, "bad text request: {e}");
                        Vec::new()
                    }
                };
                let mut out = Vec::new();
                for (k, v) in keys {
                    if k == "SendTargets" {
                        out.extend(self.send_targets(&v));
                    } else {
                        out.extend(encode_keys(&[(k.as_str(), "NotUnderstood")]));
                    }
                }
                out
            }
        };
        let limit = self.est.params.initiator_max_recv_data_segment_length as usize;
        let (now, rest) = if body.len() > limit {
            body.split_at(limit)
        } else {
            (&body[..], &[][..])
        };
        let more = !rest.is_empty();
        let ttt = if more {
            let ttt = self.next_ttt;
            self.next_ttt = self.next_ttt.wrapping_add(1).max(1);
            self.text_continuation = Some(TextContinuation {
                itt: t.itt,
                ttt,
                rest: rest.to_vec(),
            });
            ttt
        } else {
            RESERVED_TAG
        };
        let r = TextResponse {
            final_flag: !more,
            cont: more,
            lun: t.lun,
            itt: t.itt,
            ttt,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data: now.to_vec(),
        };
        self.conn.write_pdu(&r.to_raw()).await?;
        Ok(Flow::Continue)
    }

    /// SendTargets (RFC 7143 §12.3): TargetName and TargetAddress for each visible target,
    /// at the advertised portal, or the one this connection came in on (portal group 1).
    fn send_targets(&self, value: &str) -> Vec<u8> {
        let current = (!self.est.target_name.is_empty()).then_some(self.est.target_name.as_str());
        let names = self
            .registry
            .send_targets(&self.est.initiator_name, value, current);
        let address = format!("{},1", self.portal);
        let mut out = Vec::new();
        for n in names {
            out.extend(encode_keys(&[
                ("TargetName", n.as_str()),
                ("TargetAddress", address.as_str()),
            ]));
        }
        out
    }

    pub(super) async fn on_logout(&mut self, l: LogoutRequest) -> std::io::Result<Flow> {
        if !l.immediate {
            self.accept_cmd_sn(l.cmd_sn);
        }
        let r = LogoutResponse {
            // Reason 2 (remove the connection for recovery) needs ErrorRecoveryLevel 2.
            response: if l.reason == 2 { 2 } else { 0 },
            itt: l.itt,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            time2wait: 0,
            time2retain: 0,
        };
        self.conn.write_pdu(&r.to_raw()).await?;
        Ok(Flow::Close(format!(
            "logout requested (reason {})",
            l.reason
        )))
    }
}
