//! A small iSCSI initiator on the same codec: login (with optional CHAP), SendTargets, and SCSI
//! commands of any CDB length (a CDB over 16 bytes goes in an Extended-CDB AHS, which libiscsi
//! cannot send). For tests and tools; one command at a time.

pub mod cdb;
pub mod replies;

use crate::login::chap::{self, ChapCredentials};
use crate::pdu::{
    DataIn, DataOut, LoginRequest, LoginResponse, LogoutRequest, RESERVED_TAG, ReadyToTransfer,
    Residual, ScsiCommand, ScsiResponse, Stage, TextRequest, TextResponse, encode_keys, opcode,
    parse_keys,
};
use crate::session::connection::{Connection, FrameError};
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

#[derive(Debug, thiserror::Error)]
pub enum InitiatorError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    #[error("login failed with status {0:#04x}/{1:#04x}")]
    LoginRefused(u8, u8),
    #[error("protocol: {0}")]
    Protocol(String),
}

type Result<T> = std::result::Result<T, InitiatorError>;

#[derive(Debug, Clone, Default)]
pub struct LoginOptions {
    pub initiator_name: String,
    /// `None` logs in to a discovery session.
    pub target_name: Option<String>,
    pub chap: Option<ChapCredentials>,
    pub header_digest: bool,
    pub data_digest: bool,
}

/// The outcome of one SCSI command.
#[derive(Debug, Clone)]
pub struct CommandResult {
    pub status: u8,
    pub sense: Vec<u8>,
    pub data: Vec<u8>,
    pub residual: Residual,
}

impl CommandResult {
    /// (sense key, ASC, ASCQ) of the sense data (fixed or descriptor format), if any.
    pub fn sense_code(&self) -> Option<(u8, u8, u8)> {
        replies::sense_code(&self.sense).map(|c| (c.key, c.asc, c.ascq))
    }
}

pub struct Initiator {
    conn: Connection<OwnedReadHalf, OwnedWriteHalf>,
    itt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
    /// The target's MaxRecvDataSegmentLength: our largest Data-Out segment.
    target_mrdsl: usize,
    immediate_limit: usize,
    /// The LUN field of every command (SAM-5 single-level, peripheral addressing).
    lun: [u8; 8],
}

const OUR_MRDSL: u32 = 262_144;

impl Initiator {
    pub async fn connect(portal: SocketAddr, opts: &LoginOptions) -> Result<Self> {
        let stream = TcpStream::connect(portal).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let mut me = Self {
            conn: Connection::new(r, w),
            itt: 1,
            cmd_sn: 1,
            exp_stat_sn: 0,
            target_mrdsl: 8192,
            immediate_limit: 0,
            lun: [0; 8],
        };
        me.conn.max_recv_data = OUR_MRDSL as usize;
        me.login(opts).await?;
        Ok(me)
    }

    async fn login_exchange(&mut self, req: LoginRequest) -> Result<LoginResponse> {
        self.conn.write_pdu(&req.to_raw()).await?;
        self.conn.flush().await?;
        let raw = self.conn.read_pdu().await?;
        if raw.opcode() != opcode::LOGIN_RESPONSE {
            return Err(InitiatorError::Protocol(format!(
                "expected a login response, got 0x{:02x}",
                raw.opcode()
            )));
        }
        let r =
            LoginResponse::from_raw(&raw).map_err(|e| InitiatorError::Protocol(e.to_string()))?;
        if r.status_class != 0 {
            return Err(InitiatorError::LoginRefused(
                r.status_class,
                r.status_detail,
            ));
        }
        self.exp_stat_sn = r.stat_sn.wrapping_add(1);
        Ok(r)
    }

    async fn login(&mut self, opts: &LoginOptions) -> Result<()> {
        let isid = [0x80, 0x12, 0x34, 0x56, 0x78, rand::random()];
        let base = |transit, csg, nsg, data: Vec<u8>, exp_stat_sn| LoginRequest {
            transit,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid,
            tsih: 0,
            itt: 0,
            cid: 0,
            cmd_sn: 1,
            exp_stat_sn,
            data,
        };
        let mut first: Vec<(String, String)> =
            vec![("InitiatorName".into(), opts.initiator_name.clone())];
        match &opts.target_name {
            Some(t) => {
                first.push(("SessionType".into(), "Normal".into()));
                first.push(("TargetName".into(), t.clone()));
            }
            None => first.push(("SessionType".into(), "Discovery".into())),
        }
        first.push((
            "AuthMethod".into(),
            if opts.chap.is_some() {
                "CHAP".into()
            } else {
                "None".into()
            },
        ));
        let r = self
            .login_exchange(base(
                opts.chap.is_none(),
                Stage::Security,
                Stage::Operational,
                encode_keys(&first),
                0,
            ))
            .await?;
        if let Some(creds) = &opts.chap {
            let r = self
                .login_exchange(base(
                    false,
                    Stage::Security,
                    Stage::Operational,
                    encode_keys(&[("CHAP_A", "5")]),
                    self.exp_stat_sn,
                ))
                .await?;
            let keys = parse_keys(&r.data).map_err(|e| InitiatorError::Protocol(e.to_string()))?;
            let get = |n: &str| keys.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let id: u8 = get("CHAP_I")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| InitiatorError::Protocol("no CHAP_I".into()))?;
            let c = get("CHAP_C")
                .and_then(|v| chap::decode_binary(&v))
                .ok_or_else(|| InitiatorError::Protocol("no CHAP_C".into()))?;
            let resp = chap::encode_hex(&chap::response(id, creds.secret.as_bytes(), &c));
            let r = self
                .login_exchange(base(
                    true,
                    Stage::Security,
                    Stage::Operational,
                    encode_keys(&[("CHAP_N", creds.user.as_str()), ("CHAP_R", resp.as_str())]),
                    self.exp_stat_sn,
                ))
                .await?;
            if !r.transit {
                return Err(InitiatorError::Protocol(
                    "target did not leave the security stage".into(),
                ));
            }
        } else if !r.transit {
            return Err(InitiatorError::Protocol(
                "target did not leave the security stage".into(),
            ));
        }
        let digest = |on: bool| if on { "CRC32C" } else { "None" };
        let mrdsl = OUR_MRDSL.to_string();
        let mut ops: Vec<(&str, &str)> = vec![
            ("HeaderDigest", digest(opts.header_digest)),
            ("DataDigest", digest(opts.data_digest)),
            ("MaxRecvDataSegmentLength", &mrdsl),
        ];
        if opts.target_name.is_some() {
            ops.extend([
                ("ImmediateData", "Yes"),
                ("InitialR2T", "Yes"),
                ("MaxBurstLength", "16776192"),
                ("FirstBurstLength", "262144"),
                ("MaxOutstandingR2T", "1"),
                ("ErrorRecoveryLevel", "0"),
            ]);
        }
        let r = self
            .login_exchange(base(
                true,
                Stage::Operational,
                Stage::FullFeature,
                encode_keys(&ops),
                self.exp_stat_sn,
            ))
            .await?;
        if !(r.transit && r.nsg == Stage::FullFeature) {
            return Err(InitiatorError::Protocol(
                "target did not enter the full-feature phase".into(),
            ));
        }
        let keys = parse_keys(&r.data).map_err(|e| InitiatorError::Protocol(e.to_string()))?;
        let mut immediate = true;
        let mut first_burst = 65_536usize;
        for (k, v) in keys {
            match k.as_str() {
                "MaxRecvDataSegmentLength" => self.target_mrdsl = v.parse().unwrap_or(8192),
                "HeaderDigest" => self.conn.header_digest = v == "CRC32C",
                "DataDigest" => self.conn.data_digest = v == "CRC32C",
                "ImmediateData" => immediate = v == "Yes",
                "FirstBurstLength" => first_burst = v.parse().unwrap_or(65_536),
                _ => {}
            }
        }
        self.immediate_limit = if immediate {
            first_burst.min(self.target_mrdsl)
        } else {
            0
        };
        Ok(())
    }

    fn next_itt(&mut self) -> u32 {
        self.itt = self.itt.wrapping_add(1);
        if self.itt == RESERVED_TAG {
            self.itt = 1;
        }
        self.itt
    }

    /// SendTargets=All on a discovery session: (name, address) pairs.
    pub async fn send_targets(&mut self) -> Result<Vec<(String, String)>> {
        let itt = self.next_itt();
        let req = TextRequest {
            immediate: false,
            final_flag: true,
            cont: false,
            lun: [0; 8],
            itt,
            ttt: RESERVED_TAG,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: encode_keys(&[("SendTargets", "All")]),
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.conn.write_pdu(&req.to_raw()).await?;
        self.conn.flush().await?;
        let raw = self.conn.read_pdu().await?;
        let r =
            TextResponse::from_raw(&raw).map_err(|e| InitiatorError::Protocol(e.to_string()))?;
        self.exp_stat_sn = r.stat_sn.wrapping_add(1);
        let keys = parse_keys(&r.data).map_err(|e| InitiatorError::Protocol(e.to_string()))?;
        let mut out = Vec::new();
        let mut name = None;
        for (k, v) in keys {
            match k.as_str() {
                "TargetName" => name = Some(v),
                "TargetAddress" => {
                    if let Some(n) = name.take() {
                        out.push((n, v));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Addresses later commands to `lun` instead of LUN 0 (tgt, for one, serves its
    /// disks from LUN 1).
    pub fn use_lun(&mut self, lun: u8) {
        self.lun = [0, lun, 0, 0, 0, 0, 0, 0];
    }

    /// Runs one SCSI command on the current LUN (LUN 0 unless `use_lun`). `data_out` non-empty makes it a write; `expected_in` is the
    /// ExpectedDataTransferLength for a read.
    pub async fn command(
        &mut self,
        cdb: &[u8],
        data_out: &[u8],
        expected_in: u32,
    ) -> Result<CommandResult> {
        let itt = self.next_itt();
        let write = !data_out.is_empty();
        let immediate = data_out.len().min(self.immediate_limit);
        let cmd = ScsiCommand {
            immediate: false,
            final_flag: true,
            read: expected_in > 0,
            write,
            attr: 1,
            lun: self.lun,
            itt,
            expected_data_len: if write {
                data_out.len() as u32
            } else {
                expected_in
            },
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: cdb.to_vec(),
            data: data_out[..immediate].to_vec(),
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.conn.write_pdu(&cmd.to_raw()).await?;
        self.conn.flush().await?;
        let mut data = Vec::new();
        loop {
            let raw = self.conn.read_pdu().await?;
            match raw.opcode() {
                opcode::DATA_IN => {
                    let d = DataIn::from_raw(&raw)
                        .map_err(|e| InitiatorError::Protocol(e.to_string()))?;
                    if d.buffer_offset as usize != data.len() {
                        return Err(InitiatorError::Protocol("Data-In out of order".into()));
                    }
                    data.extend_from_slice(&d.data);
                    if let Some(status) = d.status {
                        self.exp_stat_sn = d.stat_sn.wrapping_add(1);
                        return Ok(CommandResult {
                            status,
                            sense: Vec::new(),
                            data,
                            residual: d.residual,
                        });
                    }
                }
                opcode::R2T => {
                    let r = ReadyToTransfer::from_raw(&raw)
                        .map_err(|e| InitiatorError::Protocol(e.to_string()))?;
                    let start = r.buffer_offset as usize;
                    let end = (start + r.desired_len as usize).min(data_out.len());
                    let mut sn = 0;
                    let mut at = start;
                    while at < end {
                        let n = (end - at).min(self.target_mrdsl);
                        let out = DataOut {
                            final_flag: at + n == end,
                            lun: self.lun,
                            itt,
                            ttt: r.ttt,
                            exp_stat_sn: self.exp_stat_sn,
                            data_sn: sn,
                            buffer_offset: at as u32,
                            data: data_out[at..at + n].to_vec(),
                        };
                        self.conn.write_pdu(&out.to_raw()).await?;
                        sn += 1;
                        at += n;
                    }
                    self.conn.flush().await?;
                }
                opcode::SCSI_RESPONSE => {
                    let r = ScsiResponse::from_raw(&raw)
                        .map_err(|e| InitiatorError::Protocol(e.to_string()))?;
                    self.exp_stat_sn = r.stat_sn.wrapping_add(1);
                    return Ok(CommandResult {
                        status: r.status,
                        sense: r.sense,
                        data,
                        residual: r.residual,
                    });
                }
                opcode::NOP_IN => {}
                other => {
                    return Err(InitiatorError::Protocol(format!(
                        "unexpected PDU 0x{other:02x}"
                    )));
                }
            }
        }
    }

    /// Logs out (close the session) and waits for the response.
    pub async fn logout(mut self) -> Result<()> {
        let itt = self.next_itt();
        let req = LogoutRequest {
            immediate: true,
            reason: 0,
            itt,
            cid: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.conn.write_pdu(&req.to_raw()).await?;
        self.conn.flush().await?;
        let raw = self.conn.read_pdu().await?;
        if raw.opcode() != opcode::LOGOUT_RESPONSE {
            return Err(InitiatorError::Protocol(
                "expected a logout response".into(),
            ));
        }
        Ok(())
    }
}
