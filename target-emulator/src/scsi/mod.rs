//! SCSI block device emulation (SPC-4 / SBC-4) over a [`Lun`].
//!
//! A command runs in two steps so the session never solicits data it would throw away:
//! [`prepare`] parses the CDB and checks it against the LUN (range, write protection, limits)
//! and says how many data-out bytes it needs; [`execute`] then runs it with that buffer. Each
//! command family has its own module; sense bytes are built only in [`sense`].

pub mod capacity;
pub mod cdb;
pub mod inquiry;
pub mod lba_status;
pub mod mode;
pub mod provisioning;
pub mod read_write;
pub mod sense;

use crate::lun::Lun;
use cdb::Command;
use sense::Sense;

/// Limits the target advertises in VPD 0xB0 and enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest READ/WRITE, in bytes.
    pub max_transfer_bytes: u32,
    pub max_unmap_blocks: u32,
    pub max_unmap_descriptors: u32,
    pub max_write_same_blocks: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_transfer_bytes: 8 << 20,
            max_unmap_blocks: 1 << 22,
            max_unmap_descriptors: 256,
            max_write_same_blocks: 1 << 16,
        }
    }
}

/// What a successful command returns: its status (GOOD, or CONDITION MET for PRE-FETCH) and the
/// data-in bytes, already cut to the allocation length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
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
pub struct Prepared {
    pub command: Command,
    pub data_out_len: usize,
}

/// Whether LUN 0 is addressed; any other LUN number answers only INQUIRY, REPORT LUNS and
/// REQUEST SENSE (SPC-4 §4.6.21).
#[derive(Clone, Copy)]
pub enum Addressed<'a> {
    Lun(&'a dyn Lun),
    Missing,
}

pub(crate) fn truncate(mut data: Vec<u8>, alloc: usize) -> Vec<u8> {
    data.truncate(alloc);
    data
}

/// Parses `cdb` and checks it against the LUN before any data moves.
pub fn prepare(
    cdb_bytes: &[u8],
    target: Addressed<'_>,
    limits: &Limits,
) -> Result<Prepared, Sense> {
    let command = cdb::parse(cdb_bytes)?;
    let lun = match target {
        Addressed::Lun(l) => l,
        Addressed::Missing => {
            return match command {
                Command::Inquiry { .. }
                | Command::ReportLuns { .. }
                | Command::RequestSense { .. } => Ok(Prepared {
                    command,
                    data_out_len: 0,
                }),
                _ => Err(Sense::lun_not_supported()),
            };
        }
    };
    let bs = lun.block_size() as u64;
    let data_out_len = match &command {
        Command::Read(r) => {
            read_write::check_range(lun, r, Some((limits, length_field(cdb_bytes[0]))))?;
            0
        }
        Command::Write(r) => {
            if lun.read_only() {
                return Err(Sense::write_protected());
            }
            read_write::check_range(lun, r, Some((limits, length_field(cdb_bytes[0]))))?;
            (r.blocks * bs) as usize
        }
        Command::Verify { range, byte_check } => {
            read_write::check_range(lun, range, Some((limits, length_field(cdb_bytes[0]))))?;
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
                return Err(Sense::write_protected());
            }
            if !lun.supports_deallocate() {
                return Err(Sense::invalid_opcode());
            }
            *parameter_list_length as usize
        }
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

/// Runs a prepared command. `data_out` holds exactly `prepared.data_out_len` bytes.
pub fn execute(
    p: &Prepared,
    target: Addressed<'_>,
    data_out: &[u8],
    limits: &Limits,
) -> Result<Reply, Sense> {
    let lun = match target {
        Addressed::Lun(l) => l,
        Addressed::Missing => {
            return match p.command {
                Command::Inquiry {
                    evpd,
                    allocation_length,
                    ..
                } => inquiry::not_present(evpd, allocation_length).map(Reply::good),
                Command::ReportLuns {
                    allocation_length, ..
                } => Ok(Reply::good(report_luns(allocation_length))),
                Command::RequestSense {
                    allocation_length,
                    descriptor_format,
                } => Ok(Reply::good(request_sense(
                    descriptor_format,
                    allocation_length,
                ))),
                _ => Err(Sense::lun_not_supported()),
            };
        }
    };
    match &p.command {
        Command::TestUnitReady => Ok(Reply::good(Vec::new())),
        Command::RequestSense {
            descriptor_format,
            allocation_length,
        } => Ok(Reply::good(request_sense(
            *descriptor_format,
            *allocation_length,
        ))),
        Command::Inquiry {
            evpd,
            page,
            allocation_length,
        } => inquiry::inquiry(lun, *evpd, *page, *allocation_length, limits).map(Reply::good),
        Command::ModeSense(m) => mode::mode_sense(lun, m).map(Reply::good),
        Command::ReadCapacity10 => Ok(Reply::good(capacity::read_capacity_10(lun))),
        Command::ReadCapacity16 { allocation_length } => {
            capacity::read_capacity_16(lun, *allocation_length).map(Reply::good)
        }
        Command::Read(r) => read_write::read(lun, r).map(Reply::good),
        Command::Write(r) => read_write::write(lun, r, data_out).map(|_| Reply::good(Vec::new())),
        Command::Verify { range, byte_check } => {
            read_write::verify(lun, range, *byte_check, data_out).map(|_| Reply::good(Vec::new()))
        }
        // Everything is "in cache" as far as an initiator can tell: the page cache holds it.
        Command::PreFetch(_) => Ok(Reply {
            status: sense::status::CONDITION_MET,
            data: Vec::new(),
        }),
        Command::SynchronizeCache(_) => lun
            .flush()
            .map(|_| Reply::good(Vec::new()))
            .map_err(|e| Sense::from_lun_error(&e, true)),
        Command::WriteSame(w) => {
            provisioning::write_same(lun, w, data_out).map(|_| Reply::good(Vec::new()))
        }
        Command::Unmap { .. } => {
            provisioning::unmap(lun, data_out, limits).map(|_| Reply::good(Vec::new()))
        }
        Command::ReportLuns {
            allocation_length, ..
        } => Ok(Reply::good(report_luns(*allocation_length))),
        Command::GetLbaStatus(g) => lba_status::get_lba_status(lun, g).map(Reply::good),
    }
}

/// REPORT LUNS (SPC-4 §6.33): every target name has exactly one LUN, LUN 0.
fn report_luns(alloc: u32) -> Vec<u8> {
    let mut d = vec![0u8; 16];
    d[0..4].copy_from_slice(&8u32.to_be_bytes());
    truncate(d, alloc as usize)
}

/// REQUEST SENSE (SPC-4 §6.39): we report sense with every CHECK CONDITION (autosense), so there
/// is never pending sense: NO SENSE.
fn request_sense(descriptor_format: bool, alloc: u8) -> Vec<u8> {
    let d = if descriptor_format {
        vec![0x72, 0, 0, 0, 0, 0, 0, 0]
    } else {
        Sense::new(sense::SenseKey::NoSense, 0, 0).to_bytes()
    };
    truncate(d, alloc as usize)
}
