//! The typed commands the parser produces: what each handler of [`super::super`] receives.

/// A read, write, verify or pre-fetch of a block range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    pub lba: u64,
    pub blocks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetLbaStatus {
    pub lba: u64,
    pub allocation_length: u32,
    pub report_type: u8,
    /// Logical blocks to scan; 0 = to the end. Only the 32-byte form carries it.
    pub scan_length: u32,
    pub element_id: u32,
    /// True for the 32-byte form: field pointers in sense data differ.
    pub long_form: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSense {
    pub ten_byte: bool,
    pub disable_block_descriptors: bool,
    pub long_lba_accepted: bool,
    pub page_control: u8,
    pub page: u8,
    pub subpage: u8,
    pub allocation_length: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSame {
    pub range: BlockRange,
    pub unmap: bool,
    pub anchor: bool,
    /// No data-out buffer: the block is all zeros (WRITE SAME(16) NDOB).
    pub no_data_out: bool,
    pub long_form: bool,
}

/// READ DEFECT DATA(10) and (12) (SBC-4 §5.17, §5.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadDefectData {
    pub twelve_byte: bool,
    pub primary_list: bool,
    pub grown_list: bool,
    pub format: u8,
    pub allocation_length: u32,
}

/// REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOpcodes {
    /// RCTD: append a command timeouts descriptor to each command.
    pub timeouts: bool,
    pub reporting_options: u8,
    pub opcode: u8,
    pub service_action: u16,
    pub allocation_length: u32,
}

/// PERSISTENT RESERVE OUT (SPC-4 §6.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveOut {
    pub service_action: u8,
    pub scope: u8,
    pub kind: u8,
    pub parameter_list_length: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    TestUnitReady,
    RequestSense {
        descriptor_format: bool,
        allocation_length: u8,
    },
    Inquiry {
        evpd: bool,
        page: u8,
        allocation_length: u16,
    },
    ModeSense(ModeSense),
    ReadCapacity10,
    ReadCapacity16 {
        allocation_length: u32,
    },
    Read(BlockRange),
    /// WRITE; FUA (force unit access) makes the data durable before GOOD.
    Write {
        range: BlockRange,
        fua: bool,
    },
    /// VERIFY; with `byte_check` the data-out buffer is compared with the medium.
    Verify {
        range: BlockRange,
        byte_check: bool,
    },
    /// WRITE AND VERIFY: a durable write, then (with `byte_check`) a compare with the medium.
    WriteAndVerify {
        range: BlockRange,
        byte_check: bool,
    },
    /// COMPARE AND WRITE: the data-out buffer holds `blocks` blocks to compare, then `blocks`
    /// blocks to write if they all matched.
    CompareAndWrite {
        range: BlockRange,
        fua: bool,
    },
    /// ORWRITE(16): each block becomes the bitwise OR of itself and the data-out block.
    OrWrite {
        range: BlockRange,
        fua: bool,
    },
    ReadDefectData(ReadDefectData),
    ReportSupportedOpcodes(ReportOpcodes),
    PersistentReserveIn {
        service_action: u8,
        allocation_length: u16,
    },
    PersistentReserveOut(ReserveOut),
    /// RESERVE(6) and RELEASE(6) (SPC-2 §7.21, §7.16): the reservation of the whole unit.
    Reserve,
    Release,
    PreFetch(BlockRange),
    SynchronizeCache(BlockRange),
    WriteSame(WriteSame),
    Unmap {
        parameter_list_length: u16,
    },
    ReportLuns {
        select_report: u8,
        allocation_length: u32,
    },
    GetLbaStatus(GetLbaStatus),
}
