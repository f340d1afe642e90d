//! Entry points of the `cargo fuzz` targets (`fuzz/fuzz_targets/`) and of the replay of their
//! corpus (`tests/fuzz_corpus.rs`): what a remote initiator can send, driven through the pure
//! layers it reaches. Each takes arbitrary bytes and must never panic. Where a property must
//! hold (a decoded PDU re-encodes to itself, the target answers in well-formed text) it is
//! asserted, so a broken property is a crash too.
//!
//! This module never does I/O: the logical unit behind the SCSI commands is a provisioning map
//! made from the input, with no storage behind it.

use crate::login::chap::{self, ChapCredentials};
use crate::login::negotiation::{self, SessionParams, TargetLimits};
use crate::login::{Authentication, Directory, Login, Lookup, Step};
use crate::lun::{Lun, LunError, Provisioning};
use crate::pdu::{
    BHS_LEN, DataIn, DataOut, Framing, FramingError, LoginRequest, LoginResponse, LogoutRequest,
    LogoutResponse, NopIn, NopOut, RawPdu, ReadyToTransfer, Reject, Request, ScsiCommand,
    ScsiResponse, TaskMgmtRequest, TaskMgmtResponse, TextRequest, TextResponse, encode_keys, frame,
    opcode, parse_keys,
};
use crate::scsi::cdb::{self, Command};
use crate::scsi::{Addressed, Limits, Nexus, UnitState, execute, prepare};

/// At most this many PDUs are framed from one input.
const MAX_PDUS: usize = 64;
/// At most this many login steps are taken from one input.
const MAX_LOGIN_STEPS: usize = 16;
/// The receive limit when the mode byte does not ask for the small one: the `Connection`
/// default.
const MAX_RECV_DATA: usize = 64 * 1024;
/// Largest data-out buffer a fuzzed command is given; larger ones are only prepared.
const MAX_DATA_OUT: usize = 1 << 20;
/// Mask of the fuzzed logical unit's block count: 2^40 blocks, 512 TiB of 512-byte blocks.
const MAX_BLOCKS: u64 = (1 << 40) - 1;

/// PDUs off the wire. Byte 0 is a mode: bit 0 header digests, bit 1 data digests, bit 2 a
/// 512-byte receive limit. The rest is a byte stream framed as the connection frames it
/// ([`crate::pdu::frame`]); each PDU is decoded as every PDU type, and its data segment as
/// text keys.
pub fn pdu(data: &[u8]) {
    let Some((&mode, mut wire)) = data.split_first() else {
        return;
    };
    let header_digest = mode & 1 != 0;
    let data_digest = mode & 2 != 0;
    let max_recv_data = if mode & 4 != 0 { 512 } else { MAX_RECV_DATA };
    for _ in 0..MAX_PDUS {
        let (raw, used) = match frame(wire, header_digest, data_digest, max_recv_data) {
            Ok(Some(framed)) => framed,
            // The session rejects a PDU whose data failed its digest and reads on.
            Err(FramingError::DataDigest(raw)) => {
                let framing = Framing::of(&raw.bhs, header_digest, data_digest);
                let used = framing.wire_len();
                (*raw, used)
            }
            Ok(None) | Err(_) => return,
        };
        assert!(
            (BHS_LEN..=wire.len()).contains(&used),
            "framing took {used} of {} bytes",
            wire.len()
        );
        assert_eq!(raw.ahs.len(), RawPdu::announced_ahs_len(&raw.bhs));
        assert_eq!(raw.data.len(), RawPdu::announced_data_len(&raw.bhs));
        decode_as_every_type(&raw);
        frame_round_trip(&raw);
        wire = &wire[used..];
    }
}

/// CDBs. The input starts with a CDB, as long as its operation code says; the bytes after it
/// describe the logical unit ([`FuzzLun::from_bytes`]) and fill the data-out buffer. The CDB
/// is parsed, then prepared and executed against that unit and against a missing LUN. The
/// first 16 and 32 bytes are also run as GET LBA STATUS(16) and (32) with their operation code
/// and service action forced, so those two forms are always exercised.
pub fn cdb(data: &[u8]) {
    if let Err(sense) = cdb::parse(data) {
        sense_bytes(&sense);
    }
    let (cdb, rest) = data.split_at(cdb_len(data).min(data.len()));
    let lun = FuzzLun::from_bytes(rest);
    run_command(cdb, &lun, rest);

    let mut sixteen = [0u8; 16];
    copy_prefix(&mut sixteen, data);
    sixteen[0] = cdb::op::SERVICE_ACTION_IN_16;
    sixteen[1] = sixteen[1] & 0xe0 | cdb::service_action::GET_LBA_STATUS as u8;
    match cdb::parse(&sixteen) {
        Ok(Command::GetLbaStatus(g)) => assert!(!g.long_form),
        other => panic!("GET LBA STATUS(16) parsed as {other:?}"),
    }
    run_command(&sixteen, &lun, rest);

    let mut thirty_two = [0u8; 32];
    copy_prefix(&mut thirty_two, data);
    thirty_two[0] = cdb::op::VARIABLE_LENGTH;
    thirty_two[7] = 0x18;
    thirty_two[8..10].copy_from_slice(&cdb::service_action::GET_LBA_STATUS.to_be_bytes());
    match cdb::parse(&thirty_two) {
        Ok(Command::GetLbaStatus(g)) => {
            assert!(g.long_form);
            assert_eq!(g.lba.to_be_bytes(), thirty_two[12..20]);
            assert_eq!(g.allocation_length.to_be_bytes(), thirty_two[28..32]);
        }
        other => panic!("GET LBA STATUS(32) parsed as {other:?}"),
    }
    run_command(&thirty_two, &lun, rest);
}

/// Login text. The whole input is first parsed as one text segment and each key negotiated on
/// its own. Then it is played as a login conversation: segments separated by 0xff (a byte that
/// never occurs in UTF-8 text), each a Login Request's flags byte (T, C, CSG, NSG) followed by
/// its text, stepped through [`Login`] against a directory with an open, a CHAP-protected and
/// a forbidden target.
pub fn login(data: &[u8]) {
    text_keys(data);
    let mut login = Login::new(TargetLimits::default(), 1);
    for segment in data.split(|&b| b == 0xff).take(MAX_LOGIN_STEPS) {
        let Some((&flags, text)) = segment.split_first() else {
            continue;
        };
        let mut raw = RawPdu::default();
        raw.bhs[0] = 0x40 | opcode::LOGIN_REQUEST;
        raw.bhs[1] = flags;
        raw.bhs[8] = 0x80;
        raw.data = text.to_vec();
        let Ok(request) = LoginRequest::from_raw(&raw.seal()) else {
            continue;
        };
        let (response, last) = match login.step(&request, &FuzzDirectory) {
            Step::Continue(r) => (r, false),
            Step::Complete(r, _) | Step::Fail(r, _) => (r, true),
        };
        assert_eq!(
            LoginResponse::from_raw(&response.to_raw()).as_ref(),
            Ok(&response)
        );
        if let Err(e) = parse_keys(&response.data) {
            panic!("the target answered with malformed text ({e}): {response:?}");
        }
        if last {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PDUs

/// Decodes `$raw` as `$ty`; a value it gives must re-encode to itself.
macro_rules! round_trip {
    ($ty:ty, $raw:expr) => {{
        let decoded = <$ty>::from_raw($raw);
        if let Ok(value) = &decoded {
            assert_eq!(
                <$ty>::from_raw(&value.to_raw()).as_ref(),
                Ok(value),
                concat!(stringify!($ty), " does not re-encode to itself")
            );
        }
        decoded.ok()
    }};
}

/// Decodes `raw` as itself and, with its opcode replaced, as every typed PDU.
fn decode_as_every_type(raw: &RawPdu) {
    let _ = Request::from_raw(raw);
    text_keys(&raw.data);
    let as_op = |op: u8| {
        let mut r = raw.clone();
        r.bhs[0] = r.bhs[0] & 0xc0 | op;
        r
    };
    if let Some(command) = round_trip!(ScsiCommand, &as_op(opcode::SCSI_COMMAND)) {
        let _ = cdb::parse(&command.cdb);
    }
    round_trip!(ScsiResponse, &as_op(opcode::SCSI_RESPONSE));
    round_trip!(DataIn, &as_op(opcode::DATA_IN));
    round_trip!(DataOut, &as_op(opcode::DATA_OUT));
    round_trip!(ReadyToTransfer, &as_op(opcode::R2T));
    round_trip!(NopOut, &as_op(opcode::NOP_OUT));
    round_trip!(NopIn, &as_op(opcode::NOP_IN));
    round_trip!(LoginRequest, &as_op(opcode::LOGIN_REQUEST));
    round_trip!(LoginResponse, &as_op(opcode::LOGIN_RESPONSE));
    round_trip!(TextRequest, &as_op(opcode::TEXT_REQUEST));
    round_trip!(TextResponse, &as_op(opcode::TEXT_RESPONSE));
    round_trip!(LogoutRequest, &as_op(opcode::LOGOUT_REQUEST));
    round_trip!(LogoutResponse, &as_op(opcode::LOGOUT_RESPONSE));
    round_trip!(TaskMgmtRequest, &as_op(opcode::TASK_MGMT_REQUEST));
    round_trip!(TaskMgmtResponse, &as_op(opcode::TASK_MGMT_RESPONSE));
    round_trip!(Reject, &as_op(opcode::REJECT));
}

/// A framed PDU written back with each combination of digests frames to itself, and one byte
/// less is not yet a PDU.
fn frame_round_trip(raw: &RawPdu) {
    for (header_digest, data_digest) in [(false, false), (true, false), (false, true), (true, true)]
    {
        let wire = raw.to_wire(header_digest, data_digest);
        assert_eq!(
            frame(&wire, header_digest, data_digest, usize::MAX),
            Ok(Some((raw.clone(), wire.len())))
        );
        assert_eq!(
            frame(
                &wire[..wire.len() - 1],
                header_digest,
                data_digest,
                usize::MAX
            ),
            Ok(None)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Text keys and login

/// Parses a text segment; parsed keys re-encode to themselves and are each negotiated alone,
/// in a normal and in a discovery session, and decoded as CHAP binary values.
fn text_keys(data: &[u8]) {
    let Ok(keys) = parse_keys(data) else {
        return;
    };
    assert_eq!(parse_keys(&encode_keys(&keys)).as_ref(), Ok(&keys));
    let limits = TargetLimits::default();
    for (key, value) in &keys {
        for discovery in [false, true] {
            let mut params = SessionParams::defaults(&limits);
            let _ = negotiation::negotiate(key, value, &mut params, &limits, discovery);
        }
        let _ = chap::decode_binary(value);
    }
}

/// Targets the login conversations can name.
struct FuzzDirectory;

impl Directory for FuzzDirectory {
    fn lookup(&self, target_name: &str, _initiator_name: &str) -> Lookup {
        match target_name {
            "iqn.2026-01.test:open" => Lookup::Found(None),
            "iqn.2026-01.test:chap" => Lookup::Found(Some(Authentication {
                initiator: ChapCredentials {
                    user: "user".into(),
                    secret: "initiator-secret".into(),
                },
                target: Some(ChapCredentials {
                    user: "target".into(),
                    secret: "target-secret".into(),
                }),
            })),
            "iqn.2026-01.test:denied" => Lookup::Forbidden,
            _ => Lookup::NotFound,
        }
    }

    fn discovery_chap(&self) -> Option<Authentication> {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// SCSI

/// The length of the CDB at the front of `data` by its operation code (SPC-4 §4.2.5.1), or 16
/// for codes without a fixed length and no variable-length header.
fn cdb_len(data: &[u8]) -> usize {
    match data.first().map(|op| op >> 5) {
        Some(0) => 6,
        Some(1 | 2) => 10,
        Some(5) => 12,
        Some(_) if data[0] == cdb::op::VARIABLE_LENGTH && data.len() > 7 => 8 + data[7] as usize,
        _ => 16,
    }
}

fn copy_prefix(to: &mut [u8], from: &[u8]) {
    let n = to.len().min(from.len());
    to[..n].copy_from_slice(&from[..n]);
}

fn sense_bytes(sense: &crate::scsi::sense::Sense) {
    let _ = sense.to_bytes();
    let _ = sense.to_descriptor_bytes();
}

/// Prepares and executes `cdb` on `lun` and on a missing LUN, with a data-out buffer that
/// starts with `fill`.
fn run_command(cdb: &[u8], lun: &FuzzLun, fill: &[u8]) {
    let state = UnitState::new();
    let nexus = Nexus::new("iqn.2026-01.test:fuzz", [0x80, 0, 0, 0, 0, 1]);
    let limits = Limits {
        max_transfer_bytes: 64 * 1024,
        ..Limits::default()
    };
    for target in [Addressed::Lun { lun, state: &state }, Addressed::Missing] {
        let prepared = match prepare(cdb, target, &nexus, &limits) {
            Ok(p) => p,
            Err(failure) => {
                let _ = failure.sense_bytes();
                continue;
            }
        };
        let _ = prepared.fit_to(prepared.data_out_len / 2, lun.block_size);
        if prepared.data_out_len > MAX_DATA_OUT {
            continue;
        }
        let mut data_out = vec![0u8; prepared.data_out_len];
        copy_prefix(&mut data_out, fill);
        if let Err(failure) = execute(&prepared, target, &nexus, &data_out, &limits) {
            let _ = failure.sense_bytes();
        }
    }
}

/// A logical unit made from fuzz input, storing nothing: reads are zeros and writes vanish. A
/// fake because a fuzz target must not do I/O (files are exercised by the integration tests);
/// it checks the [`Lun`] contract the SCSI layer must keep, so a handler reaching past the end
/// of the medium is a crash.
struct FuzzLun {
    block_size: u32,
    block_count: u64,
    read_only: bool,
    deallocate: bool,
    /// Runs repeated over the medium; empty means all mapped.
    runs: Vec<(Provisioning, u64)>,
    period: u64,
}

impl FuzzLun {
    /// Byte 0: flags (bit 0 4096-byte blocks, bit 1 read-only, bit 2 supports deallocation);
    /// bytes 1–8: the block count, big-endian, its low 40 bits (at least 1; 2048 when absent);
    /// each further byte a run (top bit mapped, the rest one less than its length in units of
    /// 1/1024 of the medium, at least a block).
    ///
    /// Both bounds keep one GET LBA STATUS to about a thousand provisioning queries and 256
    /// descriptors per run, so the fuzzer runs fast; what lies past them (a million runs,
    /// media of 2^62 blocks) is covered by `scsi::lba_status`'s own bounds and their tests.
    fn from_bytes(bytes: &[u8]) -> Self {
        let flags = bytes.first().copied().unwrap_or(0);
        let block_count = match bytes.get(1..9) {
            Some(b) => (u64::from_be_bytes(b.try_into().unwrap_or_default()) & MAX_BLOCKS).max(1),
            None => 2048,
        };
        let unit = (block_count / 1024).max(1);
        let runs: Vec<(Provisioning, u64)> = bytes
            .get(9..)
            .unwrap_or_default()
            .iter()
            .take(64)
            .map(|&b| {
                let status = if b & 0x80 != 0 {
                    Provisioning::Mapped
                } else {
                    Provisioning::Deallocated
                };
                (status, ((b & 0x7f) as u64 + 1) * unit)
            })
            .collect();
        let period = runs.iter().map(|r| r.1).sum();
        Self {
            block_size: if flags & 1 != 0 { 4096 } else { 512 },
            block_count,
            read_only: flags & 2 != 0,
            deallocate: flags & 4 != 0,
            runs,
            period,
        }
    }

    fn check_range(&self, lba: u64, bytes: usize) {
        assert!(
            bytes.is_multiple_of(self.block_size as usize),
            "{bytes} bytes is not a whole number of blocks"
        );
        let blocks = (bytes / self.block_size as usize) as u64;
        assert!(
            lba.checked_add(blocks)
                .is_some_and(|end| end <= self.block_count),
            "{blocks} blocks at {lba} reach past the end ({})",
            self.block_count
        );
    }
}

impl Lun for FuzzLun {
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn block_count(&self) -> u64 {
        self.block_count
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), LunError> {
        self.check_range(lba, buf.len());
        buf.fill(0);
        Ok(())
    }
    fn write(&self, lba: u64, data: &[u8]) -> Result<(), LunError> {
        self.check_range(lba, data.len());
        if self.read_only {
            return Err(LunError::ReadOnly);
        }
        Ok(())
    }
    fn supports_deallocate(&self) -> bool {
        self.deallocate && !self.read_only
    }
    fn deallocate(&self, lba: u64, blocks: u64) -> Result<(), LunError> {
        assert!(
            lba.checked_add(blocks)
                .is_some_and(|end| end <= self.block_count),
            "deallocating {blocks} blocks at {lba} reaches past the end"
        );
        if !self.supports_deallocate() {
            return Err(LunError::DeallocateUnsupported);
        }
        Ok(())
    }
    fn provisioning(&self, lba: u64) -> Result<(Provisioning, u64), LunError> {
        assert!(
            lba < self.block_count,
            "provisioning asked at {lba}, past the end"
        );
        let left = self.block_count - lba;
        if self.runs.is_empty() {
            return Ok((Provisioning::Mapped, left));
        }
        let mut at = lba % self.period;
        for &(status, len) in &self.runs {
            if at < len {
                return Ok((status, (len - at).min(left)));
            }
            at -= len;
        }
        unreachable!("lba % period lies inside one of the runs")
    }
    fn serial(&self) -> String {
        "fuzz".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_take_empty_and_short_input() {
        for data in [&[][..], &[0], &[0xff; 3], &[0x7f; 40]] {
            pdu(data);
            cdb(data);
            login(data);
        }
    }

    #[test]
    fn fuzz_lun_runs_repeat_and_stop_at_the_end() {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&10u64.to_be_bytes());
        bytes.extend_from_slice(&[0x82, 0x01]);
        let lun = FuzzLun::from_bytes(&bytes);
        assert_eq!(lun.provisioning(0).unwrap(), (Provisioning::Mapped, 3));
        assert_eq!(lun.provisioning(3).unwrap(), (Provisioning::Deallocated, 2));
        assert_eq!(lun.provisioning(5).unwrap(), (Provisioning::Mapped, 3));
        assert_eq!(lun.provisioning(9).unwrap(), (Provisioning::Deallocated, 1));
    }
}
