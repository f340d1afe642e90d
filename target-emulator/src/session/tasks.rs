//! SCSI tasks on a session: command ordering by CmdSN, write data collection (immediate,
//! unsolicited, R2T), execution, and the Data-In / SCSI Response that end a task.

use super::state::{Flow, Queued, Session, WriteTask, sn_lt};
use crate::lun::Lun;
use crate::pdu::{
    DataIn, DataOut, RESERVED_TAG, ReadyToTransfer, Residual, ScsiCommand, ScsiResponse,
};
use crate::scsi::sense::{Failure, Sense};
use crate::scsi::{self, Addressed, Prepared, Reply, UnitState};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

/// Runs `f` (Lun I/O, possibly blocking on a disk) without stalling other tasks on this
/// worker: on a multi-threaded runtime the worker hands its other tasks away first.
fn io_blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    pub(super) async fn on_command(&mut self, cmd: ScsiCommand) -> std::io::Result<Flow> {
        if self.lun.is_none() {
            // Discovery sessions carry no SCSI (RFC 7143 §6.3).
            warn!(peer = %self.peer, "SCSI command in a discovery session");
            return Ok(Flow::Close("SCSI command in a discovery session".into()));
        }
        if cmd.immediate {
            return self.start_command(cmd).await;
        }
        if !self.accept_cmd_sn_for_command(&cmd) {
            warn!(peer = %self.peer, cmd_sn = cmd.cmd_sn, exp = self.exp_cmd_sn, "CmdSN outside the window; command ignored");
            return Ok(Flow::Continue);
        }
        if cmd.cmd_sn != self.exp_cmd_sn.wrapping_sub(1) {
            // Ahead of ExpCmdSN: hold it until the gap closes.
            self.queued.insert(cmd.cmd_sn, Queued::Command(cmd));
            return Ok(Flow::Continue);
        }
        let flow = self.start_command(cmd).await?;
        self.release_queued().await?;
        Ok(flow)
    }

    /// Like `accept_cmd_sn`, but a command ahead of ExpCmdSN is accepted without advancing.
    fn accept_cmd_sn_for_command(&mut self, cmd: &ScsiCommand) -> bool {
        if sn_lt(cmd.cmd_sn, self.exp_cmd_sn) || sn_lt(self.max_cmd_sn(), cmd.cmd_sn) {
            return false;
        }
        if self.queued.contains_key(&cmd.cmd_sn) {
            return false;
        }
        self.accept_cmd_sn(cmd.cmd_sn)
    }

    /// Runs queued commands whose turn has come.
    pub(super) async fn release_queued(&mut self) -> std::io::Result<()> {
        while let Some(q) = self.queued.remove(&self.exp_cmd_sn) {
            self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
            if let Queued::Command(cmd) = q {
                self.start_command(cmd).await?;
            }
        }
        Ok(())
    }

    /// The logical unit a LUN field names: LUN 0 is the export's, anything else is missing.
    fn addressed(&self, lun_field: &[u8; 8]) -> Option<(Arc<dyn Lun>, Arc<UnitState>)> {
        if lun_field.iter().all(|b| *b == 0) {
            self.lun.clone().zip(self.unit.clone())
        } else {
            None
        }
    }

    /// Remembers a task that ended before all its data arrived, so the rest is dropped quietly.
    fn discard(&mut self, itt: u32) {
        self.discarded_itts.push(itt);
        if self.discarded_itts.len() > 64 {
            self.discarded_itts.remove(0);
        }
    }

    async fn start_command(&mut self, cmd: ScsiCommand) -> std::io::Result<Flow> {
        let unit = self.addressed(&cmd.lun);
        let target = match &unit {
            Some((lun, state)) => Addressed::Lun { lun: &**lun, state },
            None => Addressed::Missing,
        };
        let block_size = unit.as_ref().map_or(512, |(lun, _)| lun.block_size());
        let prepared = scsi::prepare(&cmd.cdb, target, &self.nexus, &self.limits);
        let requested = prepared.as_ref().map_or(0, |p| p.data_out_len);
        // The initiator sends at most ExpectedDataTransferLength bytes: fit the command to them.
        let available = if cmd.write {
            cmd.expected_data_len as usize
        } else {
            0
        };
        let prepared =
            prepared.and_then(|p| p.fit_to(available, block_size).map_err(Failure::from));
        let prepared = match prepared {
            Ok(p) => p,
            Err(failure) => {
                if cmd.write && !cmd.final_flag {
                    self.discard(cmd.itt);
                }
                self.finish(&cmd, Err(failure), requested).await?;
                return Ok(Flow::Continue);
            }
        };
        if prepared.data_out_len == 0 {
            let result = self.execute_command(&prepared, &cmd, &[]);
            self.finish(&cmd, result, requested).await?;
            return Ok(Flow::Continue);
        }
        let needed = prepared.data_out_len;
        let mut buffer = Vec::with_capacity(needed.min(1 << 20));
        buffer.extend_from_slice(&cmd.data[..cmd.data.len().min(needed)]);
        let task = WriteTask {
            unsolicited_done: cmd.final_flag,
            cmd,
            prepared,
            needed,
            requested,
            buffer,
            r2t: None,
            next_unsolicited_data_sn: 0,
            r2t_sn: 0,
        };
        self.advance_write(task).await?;
        Ok(Flow::Continue)
    }

    /// Executes the write if its data is complete, else asks for more with an R2T.
    async fn advance_write(&mut self, mut task: WriteTask) -> std::io::Result<()> {
        if task.buffer.len() >= task.needed {
            let result =
                self.execute_command(&task.prepared, &task.cmd, &task.buffer[..task.needed]);
            return self.finish(&task.cmd, result, task.requested).await;
        }
        if task.unsolicited_done && task.r2t.is_none() {
            let offset = task.buffer.len();
            let len = (task.needed - offset).min(self.est.params.max_burst_length as usize);
            let ttt = self.next_ttt;
            self.next_ttt = self.next_ttt.wrapping_add(1).max(1);
            if self.next_ttt == RESERVED_TAG {
                self.next_ttt = 1;
            }
            let r2t = ReadyToTransfer {
                lun: task.cmd.lun,
                itt: task.cmd.itt,
                ttt,
                stat_sn: self.stat_sn,
                exp_cmd_sn: self.exp_cmd_sn,
                max_cmd_sn: self.max_cmd_sn(),
                r2t_sn: task.r2t_sn,
                buffer_offset: offset as u32,
                desired_len: len as u32,
            };
            task.r2t_sn += 1;
            task.r2t = Some((ttt, offset + len, 0));
            self.conn.write_pdu(&r2t.to_raw()).await?;
        }
        self.writes.insert(task.cmd.itt, task);
        Ok(())
    }

    pub(super) async fn on_data_out(&mut self, d: DataOut) -> std::io::Result<Flow> {
        let Some(mut task) = self.writes.remove(&d.itt) else {
            if !self.discarded_itts.contains(&d.itt) {
                warn!(peer = %self.peer, itt = d.itt, "Data-Out for no outstanding write; ignored");
            }
            return Ok(Flow::Continue);
        };
        let solicited = d.ttt != RESERVED_TAG;
        let expected_sn = match (&task.r2t, solicited) {
            (Some((ttt, _, sn)), true) if *ttt == d.ttt => *sn,
            (_, false) if !task.unsolicited_done => task.next_unsolicited_data_sn,
            _ => {
                warn!(peer = %self.peer, itt = d.itt, ttt = d.ttt, "Data-Out with an unexpected TTT");
                return Ok(Flow::Close(
                    "protocol error: Data-Out with an unexpected TTT".into(),
                ));
            }
        };
        if d.data_sn != expected_sn || d.buffer_offset as usize != task.buffer.len() {
            // A gap in DataSN means a lost PDU (RFC 7143 §7.9); at ErrorRecoveryLevel 0 the
            // task ends with CHECK CONDITION (§7.8) and the rest of its data is dropped, while
            // the connection and other tasks go on.
            warn!(peer = %self.peer, itt = d.itt, data_sn = d.data_sn, expected_sn, "Data-Out out of sequence; task ended");
            self.discard(d.itt);
            let failure = Failure::from(Sense::protocol_service_crc_error());
            self.finish(&task.cmd, Err(failure), task.requested).await?;
            return Ok(Flow::Continue);
        }
        let room = task.needed.saturating_sub(task.buffer.len());
        task.buffer
            .extend_from_slice(&d.data[..d.data.len().min(room)]);
        if solicited {
            if let Some((ttt, end, sn)) = task.r2t {
                task.r2t = if d.final_flag || task.buffer.len() >= end {
                    None
                } else {
                    Some((ttt, end, sn + 1))
                };
            }
        } else {
            task.next_unsolicited_data_sn += 1;
            if d.final_flag {
                task.unsolicited_done = true;
            }
        }
        self.advance_write(task).await?;
        Ok(Flow::Continue)
    }

    fn execute_command(
        &self,
        prepared: &Prepared,
        cmd: &ScsiCommand,
        data_out: &[u8],
    ) -> Result<Reply, Failure> {
        let unit = self.addressed(&cmd.lun);
        let target = match &unit {
            Some((lun, state)) => Addressed::Lun { lun: &**lun, state },
            None => Addressed::Missing,
        };
        io_blocking(|| scsi::execute(prepared, target, &self.nexus, data_out, &self.limits))
    }

    /// Sends the end of a task: Data-In (status in the last one when GOOD) or a SCSI Response.
    /// `written` is how many data-out bytes the CDB asked for (for the write residual).
    pub(super) async fn finish(
        &mut self,
        cmd: &ScsiCommand,
        result: Result<Reply, Failure>,
        written: usize,
    ) -> std::io::Result<()> {
        let edtl = cmd.expected_data_len;
        match result {
            Err(failure) => {
                info!(peer = %self.peer, itt = cmd.itt, opcode = format_args!("0x{:02x}", cmd.cdb[0]), "{failure}");
                let residual = if cmd.write {
                    Residual::between(edtl, written)
                } else if edtl > 0 {
                    Residual::Underflow(edtl)
                } else {
                    Residual::None
                };
                let resp = ScsiResponse {
                    residual,
                    response: 0,
                    status: failure.status(),
                    itt: cmd.itt,
                    stat_sn: self.take_stat_sn(),
                    exp_cmd_sn: self.exp_cmd_sn,
                    max_cmd_sn: self.max_cmd_sn(),
                    exp_data_sn: 0,
                    sense: failure.sense_bytes(),
                };
                self.conn.write_pdu(&resp.to_raw()).await
            }
            Ok(reply) if cmd.read && !reply.data.is_empty() && edtl > 0 => {
                let residual = Residual::between(edtl, reply.data.len());
                let send = &reply.data[..reply.data.len().min(edtl as usize)];
                let segment = self
                    .est
                    .params
                    .initiator_max_recv_data_segment_length
                    .max(512) as usize;
                let count = send.len().div_ceil(segment);
                for (i, chunk) in send.chunks(segment).enumerate() {
                    let last = i + 1 == count;
                    let header = DataIn {
                        final_flag: last,
                        status: last.then_some(reply.status),
                        residual: if last { residual } else { Residual::None },
                        lun: cmd.lun,
                        itt: cmd.itt,
                        stat_sn: if last { self.take_stat_sn() } else { 0 },
                        exp_cmd_sn: self.exp_cmd_sn,
                        max_cmd_sn: self.max_cmd_sn(),
                        data_sn: i as u32,
                        buffer_offset: (i * segment) as u32,
                        data: Vec::new(),
                    }
                    .to_raw();
                    self.conn.write_with_data(&header, chunk).await?;
                }
                Ok(())
            }
            Ok(reply) => {
                let moved = if cmd.write { written } else { reply.data.len() };
                let resp = ScsiResponse {
                    residual: if cmd.read || cmd.write || moved > 0 {
                        Residual::between(edtl, moved)
                    } else {
                        Residual::None
                    },
                    response: 0,
                    status: reply.status,
                    itt: cmd.itt,
                    stat_sn: self.take_stat_sn(),
                    exp_cmd_sn: self.exp_cmd_sn,
                    max_cmd_sn: self.max_cmd_sn(),
                    exp_data_sn: 0,
                    sense: Vec::new(),
                };
                self.conn.write_pdu(&resp.to_raw()).await
            }
        }
    }

    /// Drops every task in flight (ABORT TASK SET, LUN RESET, ...): no responses are sent for
    /// them (RFC 7143 §4.2.3.1).
    pub(super) fn abort_all(&mut self) {
        self.writes.clear();
        for q in self.queued.values_mut() {
            *q = Queued::Aborted;
        }
    }

    /// Aborts one task by its tag; true if it was found.
    pub(super) fn abort_task(&mut self, itt: u32) -> bool {
        if self.writes.remove(&itt).is_some() {
            return true;
        }
        for q in self.queued.values_mut() {
            if matches!(q, Queued::Command(c) if c.itt == itt) {
                *q = Queued::Aborted;
                return true;
            }
        }
        false
    }
}
