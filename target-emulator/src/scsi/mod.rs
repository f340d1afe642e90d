//! SCSI block device emulation (SPC-4 / SBC-4) over a [`Lun`].
//!
//! A command runs in two steps so the session never solicits data it would throw away:
//! [`prepare`] parses the CDB and checks it against the LUN (reservations, range, write
//! protection, limits) and says how many data-out bytes it needs; [`execute`] then runs it with
//! that buffer. Each command family has its own module; sense bytes are built only in [`sense`].
//! State a logical unit shares between sessions (reservations, the media lock) is a
//! [`UnitState`], owned by the export; this layer does no I/O of its own beyond the `Lun`.
//!
//! Only [`lba_status`] is public, for initiators that decode GET LBA STATUS answers; the rest
//! serves the crate's sessions and fuzz targets.

mod allocation;
pub(crate) mod capacity;
pub(crate) mod cdb;
pub(crate) mod inquiry;
pub mod lba_status;
pub(crate) mod limits;
mod mode;
mod nexus;
mod opcodes;
mod provisioning;
mod read_write;
mod reservations;
pub(crate) mod sense;
mod spc;
mod unit_attention;

use crate::lun::Lun;
use cdb::{BlockRange, Command};
pub(crate) use limits::Limits;
pub(crate) use nexus::Nexus;
pub(crate) use reservations::Reservations;
use sense::{Failure, Sense};
use spc::{read_defect_data, report_luns, sense_data};
use std::sync::RwLock;
use unit_attention::{Attention, UnitAttentions};

/// What one logical unit keeps between commands and shares between all its sessions.
#[derive(Debug, Default)]
pub(crate) struct UnitState {
    pub reservations: Reservations,
    pub attentions: UnitAttentions,
    /// Taken shared by every command that touches the medium and exclusively by COMPARE AND
    /// WRITE and ORWRITE, whose read-decide-write must be atomic (SBC-4 §5.3).
    media: RwLock<()>,
}

impl UnitState {
    pub fn new() -> Self {
        Self::default()
    }

    /// A session of `nexus` logged in.
    pub fn session_started(&self, nexus: &Nexus) {
        self.attentions.attach(nexus);
    }

    /// A session of `nexus` ended; when it was the nexus's last, the nexus is lost.
    pub fn session_ended(&self, nexus: &Nexus) {
        if self.attentions.detach(nexus) {
            self.reservations.nexus_lost(nexus);
        }
    }

    /// LOGICAL UNIT RESET (SAM-5 §6.3.3): RESERVE(6) reservations go and every nexus hears
    /// BUS DEVICE RESET FUNCTION OCCURRED.
    pub fn logical_unit_reset(&self) {
        self.reservations.reset();
        self.attentions.post_all(Attention::BusDeviceReset);
    }

    /// TARGET WARM or COLD RESET: as a logical unit reset, without the unit attention (see
    /// [`unit_attention`] for why).
    pub fn target_reset(&self) {
        self.reservations.reset();
    }
}

/// What a successful command returns: its status (GOOD, or CONDITION MET for PRE-FETCH) and the
/// data-in bytes, already cut to the allocation length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: u8,
    pub data: Vec<u8>,
}

impl Reply {
    fn good(data: Vec<u8>) -> Self {
        Self {
            status: sense::status::GOOD,
            data,
        }
    }
}

/// A parsed, checked command and the data-out bytes it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prepared {
    pub command: Command,
    pub data_out_len: usize,
}

impl Prepared {
    /// Fits the command to the `available` data-out bytes the initiator announced (its
    /// Expected Data Transfer Length), when that is less than the CDB asks for. A write
    /// shrinks to the whole blocks it was given, as libiscsi's residual tests expect (SAM-5
    /// §5.4.2 leaves the choice to the device server); anything else cannot run on part of
    /// its data: INVALID FIELD IN INFORMATION UNIT.
    /// COMPARE AND WRITE takes exactly its two halves: any other amount is an invalid field
    /// (the count is one byte, so 256 blocks wraps to 0 and must not pass as a no-op).
    pub fn fit_to(self, available: usize, block_size: u32) -> Result<Prepared, Sense> {
        if matches!(self.command, Command::CompareAndWrite { .. }) && available != self.data_out_len
        {
            return Err(Sense::invalid_field_in_cdb(13));
        }
        if available >= self.data_out_len {
            return Ok(self);
        }
        let bs = block_size as usize;
        let shorter = |r: &BlockRange| BlockRange {
            lba: r.lba,
            blocks: (available / bs) as u64,
        };
        let command = match &self.command {
            _ if !available.is_multiple_of(bs) => {
                return Err(Sense::invalid_field_in_information_unit());
            }
            Command::Write { range, fua } => Command::Write {
                range: shorter(range),
                fua: *fua,
            },
            Command::WriteAndVerify { range, byte_check } => Command::WriteAndVerify {
                range: shorter(range),
                byte_check: *byte_check,
            },
            _ => return Err(Sense::invalid_field_in_information_unit()),
        };
        Ok(Prepared {
            command,
            data_out_len: available,
        })
    }
}

/// The logical unit a command addresses: LUN 0 with its shared state, or a LUN number that
/// does not exist, which answers only INQUIRY, REPORT LUNS and REQUEST SENSE (SPC-4 §4.6.21).
#[derive(Clone, Copy)]
pub(crate) enum Addressed<'a> {
    Lun {
        lun: &'a dyn Lun,
        state: &'a UnitState,
    },
    Missing,
}

/// Parses `cdb` from `nexus` and checks it against the LUN before any data moves.
pub(crate) fn prepare(
    cdb_bytes: &[u8],
    target: Addressed<'_>,
    nexus: &Nexus,
    limits: &Limits,
) -> Result<Prepared, Failure> {
    let command = cdb::parse(cdb_bytes)?;
    let (lun, state) = match target {
        Addressed::Lun { lun, state } => (lun, state),
        Addressed::Missing => {
            return match command {
                Command::Inquiry { .. }
                | Command::ReportLuns { .. }
                | Command::RequestSense { .. } => Ok(Prepared {
                    command,
                    data_out_len: 0,
                }),
                _ => Err(Sense::lun_not_supported().into()),
            };
        }
    };
    if let Some(attention) = state.attentions.report(nexus, &command) {
        return Err(attention.into());
    }
    state.reservations.check(nexus, &command)?;
    let bs = lun.block_size() as u64;
    let length_field = length_field(cdb_bytes[0]);
    let data_out_len = match &command {
        Command::Read(r) => {
            read_write::check_range(lun, r, Some((limits, length_field)))?;
            0
        }
        Command::Write { range, .. }
        | Command::WriteAndVerify { range, .. }
        | Command::OrWrite { range, .. } => {
            if lun.read_only() {
                return Err(Sense::write_protected().into());
            }
            read_write::check_range(lun, range, Some((limits, length_field)))?;
            (range.blocks * bs) as usize
        }
        Command::CompareAndWrite { range, .. } => {
            if lun.read_only() {
                return Err(Sense::write_protected().into());
            }
            if range.blocks > limits.max_compare_and_write_blocks as u64 {
                return Err(Sense::invalid_field_in_cdb(13).into());
            }
            read_write::check_range(lun, range, None)?;
            (2 * range.blocks * bs) as usize
        }
        Command::Verify { range, byte_check } => {
            read_write::check_range(lun, range, Some((limits, length_field)))?;
            if *byte_check {
                (range.blocks * bs) as usize
            } else {
                0
            }
        }
        Command::PreFetch(r) | Command::SynchronizeCache(r) => {
            read_write::check_range(lun, r, None)?;
            0
        }
        Command::WriteSame(w) => {
            provisioning::check_write_same(lun, w, limits)?;
            provisioning::write_same_data_len(lun, w)
        }
        Command::Unmap {
            parameter_list_length,
        } => {
            if lun.read_only() {
                return Err(Sense::write_protected().into());
            }
            if !lun.supports_deallocate() {
                return Err(Sense::invalid_opcode().into());
            }
            *parameter_list_length as usize
        }
        Command::PersistentReserveOut(out) => Reservations::check_out(out)?,
        _ => 0,
    };
    Ok(Prepared {
        command,
        data_out_len,
    })
}

/// Byte offset of the TRANSFER LENGTH field, for sense field pointers.
fn length_field(opcode: u8) -> u16 {
    match opcode >> 5 {
        0 => 4,
        1 | 2 => 7,
        5 => 6,
        _ => 10,
    }
}

/// Runs a prepared command from `nexus`. `data_out` holds exactly `prepared.data_out_len` bytes.
pub(crate) fn execute(
    p: &Prepared,
    target: Addressed<'_>,
    nexus: &Nexus,
    data_out: &[u8],
    limits: &Limits,
) -> Result<Reply, Failure> {
    let (lun, state) = match target {
        Addressed::Lun { lun, state } => (lun, state),
        Addressed::Missing => {
            return match p.command {
                Command::Inquiry {
                    evpd,
                    allocation_length,
                    ..
                } => Ok(Reply::good(inquiry::not_present(evpd, allocation_length)?)),
                Command::ReportLuns {
                    allocation_length, ..
                } => Ok(Reply::good(report_luns(allocation_length))),
                Command::RequestSense {
                    allocation_length,
                    descriptor_format,
                } => Ok(Reply::good(sense_data(
                    None,
                    descriptor_format,
                    allocation_length,
                ))),
                _ => Err(Sense::lun_not_supported().into()),
            };
        }
    };
    let done = |r: Result<(), Sense>| r.map(|_| Reply::good(Vec::new())).map_err(Failure::from);
    let data = |r: Result<Vec<u8>, Sense>| r.map(Reply::good).map_err(Failure::from);
    // Read-decide-write commands hold the media exclusively; the rest share it.
    let exclusive = matches!(
        p.command,
        Command::CompareAndWrite { .. } | Command::OrWrite { .. }
    );
    let _media = if exclusive {
        Media::Exclusive(state.media.write().unwrap_or_else(|e| e.into_inner()))
    } else {
        Media::Shared(state.media.read().unwrap_or_else(|e| e.into_inner()))
    };
    match &p.command {
        Command::TestUnitReady => Ok(Reply::good(Vec::new())),
        Command::RequestSense {
            descriptor_format,
            allocation_length,
        } => {
            let pending = state.attentions.take(nexus);
            Ok(Reply::good(sense_data(
                pending,
                *descriptor_format,
                *allocation_length,
            )))
        }
        Command::Inquiry {
            evpd,
            page,
            allocation_length,
        } => data(inquiry::inquiry(
            lun,
            *evpd,
            *page,
            *allocation_length,
            limits,
        )),
        Command::ModeSense(m) => data(mode::mode_sense(lun, m)),
        Command::ReadCapacity10 => Ok(Reply::good(capacity::read_capacity_10(lun))),
        Command::ReadCapacity16 { allocation_length } => {
            data(capacity::read_capacity_16(lun, *allocation_length))
        }
        Command::Read(r) => data(read_write::read(lun, r)),
        Command::Write { range, fua } => done(read_write::write(lun, range, data_out, *fua)),
        Command::Verify { range, byte_check } => {
            done(read_write::verify(lun, range, *byte_check, data_out))
        }
        Command::WriteAndVerify { range, byte_check } => done(read_write::write_and_verify(
            lun,
            range,
            *byte_check,
            data_out,
        )),
        Command::CompareAndWrite { range, fua } => {
            done(read_write::compare_and_write(lun, range, data_out, *fua))
        }
        Command::OrWrite { range, fua } => done(read_write::or_write(lun, range, data_out, *fua)),
        // Everything is "in cache" as far as an initiator can tell: the page cache holds it.
        Command::PreFetch(_) => Ok(Reply {
            status: sense::status::CONDITION_MET,
            data: Vec::new(),
        }),
        Command::SynchronizeCache(_) => {
            done(lun.flush().map_err(|e| Sense::from_lun_error(&e, true)))
        }
        Command::WriteSame(w) => done(provisioning::write_same(lun, w, data_out)),
        Command::Unmap { .. } => done(provisioning::unmap(lun, data_out, limits)),
        Command::ReportLuns {
            allocation_length, ..
        } => Ok(Reply::good(report_luns(*allocation_length))),
        Command::GetLbaStatus(g) => data(lba_status::get_lba_status(lun, g)),
        Command::ReadDefectData(r) => Ok(Reply::good(read_defect_data(r))),
        Command::ReportSupportedOpcodes(r) => data(opcodes::report(r)),
        Command::PersistentReserveIn {
            service_action,
            allocation_length,
        } => state
            .reservations
            .persistent_reserve_in(*service_action, *allocation_length)
            .map(Reply::good),
        Command::PersistentReserveOut(out) => {
            let told = state
                .reservations
                .persistent_reserve_out(nexus, out, data_out)?;
            for (other, attention) in told {
                state.attentions.post(&other, attention);
            }
            Ok(Reply::good(Vec::new()))
        }
        Command::Reserve => state
            .reservations
            .reserve(nexus)
            .map(|_| Reply::good(Vec::new())),
        Command::Release => state
            .reservations
            .release(nexus)
            .map(|_| Reply::good(Vec::new())),
    }
}

/// A held media lock; which kind only matters to the lock.
enum Media<'a> {
    Shared(#[allow(dead_code)] std::sync::RwLockReadGuard<'a, ()>),
    Exclusive(#[allow(dead_code)] std::sync::RwLockWriteGuard<'a, ()>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lun::{LunError, Provisioning};
    use std::sync::Mutex;

    /// A LUN in memory, for the command paths; files are tested in `lun.rs` and end to end.
    struct Memory(Mutex<Vec<u8>>);

    impl Lun for Memory {
        fn block_size(&self) -> u32 {
            512
        }
        fn block_count(&self) -> u64 {
            64
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), LunError> {
            let m = self.0.lock().unwrap();
            let at = lba as usize * 512;
            buf.copy_from_slice(&m[at..at + buf.len()]);
            Ok(())
        }
        fn write(&self, lba: u64, data: &[u8]) -> Result<(), LunError> {
            let mut m = self.0.lock().unwrap();
            let at = lba as usize * 512;
            m[at..at + data.len()].copy_from_slice(data);
            Ok(())
        }
        fn provisioning(&self, lba: u64) -> Result<(Provisioning, u64), LunError> {
            Ok((Provisioning::Mapped, 64 - lba))
        }
        fn serial(&self) -> String {
            "memory".into()
        }
    }

    struct Unit {
        lun: Memory,
        state: UnitState,
    }

    impl Unit {
        fn new(fill: u8) -> Self {
            Self {
                lun: Memory(Mutex::new(vec![fill; 64 * 512])),
                state: UnitState::new(),
            }
        }
        fn target(&self) -> Addressed<'_> {
            Addressed::Lun {
                lun: &self.lun,
                state: &self.state,
            }
        }
        /// Prepares and runs `cdb` from `nexus` with `data` as the data-out buffer.
        fn run(&self, nexus: &Nexus, cdb: &[u8], data: &[u8]) -> Result<Reply, Failure> {
            let limits = Limits::default();
            let p = prepare(cdb, self.target(), nexus, &limits)?;
            let p = p.fit_to(data.len(), 512)?;
            execute(&p, self.target(), nexus, &data[..p.data_out_len], &limits)
        }
        fn block(&self, lba: usize) -> Vec<u8> {
            self.lun.0.lock().unwrap()[lba * 512..(lba + 1) * 512].to_vec()
        }
    }

    fn nexus(n: u8) -> Nexus {
        Nexus::new("iqn.2026-11.test:scsi", [0x80, 0, 0, 0, 0, n])
    }

    fn write10(lba: u32, blocks: u16) -> [u8; 10] {
        let mut c = [0u8; 10];
        c[0] = cdb::op::WRITE_10;
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&blocks.to_be_bytes());
        c
    }

    fn compare_and_write(lba: u64, blocks: u8) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = cdb::op::COMPARE_AND_WRITE;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[13] = blocks;
        c
    }

    const TEST_UNIT_READY: [u8; 6] = [0; 6];

    #[test]
    fn a_short_transfer_length_shrinks_a_write_to_whole_blocks() {
        let u = Unit::new(b'a');
        u.run(&nexus(1), &write10(0, 2), &[b'b'; 512]).unwrap();
        assert_eq!(u.block(0), vec![b'b'; 512]);
        assert_eq!(u.block(1), vec![b'a'; 512], "only what was sent is written");
        assert_eq!(
            u.run(&nexus(1), &write10(0, 1), &[b'c'; 200]),
            Err(Sense::invalid_field_in_information_unit().into())
        );
        u.run(&nexus(1), &write10(0, 1), &[]).unwrap();
        assert_eq!(u.block(0), vec![b'b'; 512]);
    }

    #[test]
    fn compare_and_write_writes_only_on_a_match() {
        let u = Unit::new(b'A');
        let mut data = vec![b'A'; 512];
        data.extend_from_slice(&[b'B'; 512]);
        u.run(&nexus(1), &compare_and_write(3, 1), &data).unwrap();
        assert_eq!(u.block(3), vec![b'B'; 512]);
        data[100] = b'x';
        let err = u.run(&nexus(1), &compare_and_write(3, 1), &data);
        let Err(Failure::Check(sense)) = err else {
            panic!("expected a miscompare, got {err:?}")
        };
        assert_eq!(
            (sense.key, sense.information),
            (sense::SenseKey::Miscompare, Some(0))
        );
        // The one-byte count of 256 blocks wraps to 0; the data-out says otherwise.
        assert_eq!(
            u.run(&nexus(1), &compare_and_write(0, 0), &[0; 1024]),
            Err(Sense::invalid_field_in_cdb(13).into())
        );
    }

    #[test]
    fn orwrite_ors_into_the_medium() {
        let u = Unit::new(0x0f);
        let mut c = [0u8; 16];
        c[0] = cdb::op::ORWRITE_16;
        c[2..10].copy_from_slice(&5u64.to_be_bytes());
        c[10..14].copy_from_slice(&1u32.to_be_bytes());
        u.run(&nexus(1), &c, &[0xf0; 512]).unwrap();
        assert_eq!(u.block(5), vec![0xff; 512]);
    }

    #[test]
    fn reservation_conflict_is_its_own_status() {
        let u = Unit::new(0);
        u.state.reservations.reserve(&nexus(1)).unwrap();
        let err = u.run(&nexus(2), &write10(0, 1), &[0; 512]).unwrap_err();
        assert_eq!(err.status(), sense::status::RESERVATION_CONFLICT);
        assert!(err.sense_bytes().is_empty());
    }

    #[test]
    fn a_logical_unit_reset_is_reported_once_to_every_nexus() {
        let u = Unit::new(0);
        let (a, b) = (nexus(1), nexus(2));
        u.state.session_started(&a);
        u.state.session_started(&b);
        u.state.logical_unit_reset();
        let inquiry = [cdb::op::INQUIRY, 0, 0, 0, 96, 0];
        assert!(
            u.run(&a, &inquiry, &[]).is_ok(),
            "INQUIRY does not report it"
        );
        let Err(Failure::Check(s)) = u.run(&a, &TEST_UNIT_READY, &[]) else {
            panic!("expected a unit attention")
        };
        assert_eq!(
            (s.key, s.asc, s.ascq),
            (sense::SenseKey::UnitAttention, 0x29, 0x03)
        );
        assert!(u.run(&a, &TEST_UNIT_READY, &[]).is_ok());
        let request_sense = [cdb::op::REQUEST_SENSE, 0, 0, 0, 18, 0];
        let d = u.run(&b, &request_sense, &[]).unwrap().data;
        assert_eq!((d[2], d[12], d[13]), (6, 0x29, 0x03));
        assert!(u.run(&b, &TEST_UNIT_READY, &[]).is_ok());
    }
}
