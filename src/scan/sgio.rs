//! SCSI commands to a Linux block or sg device through the SG_IO ioctl (the kernel's
//! `sg_io_hdr` interface, version 3, which sg3_utils uses too): what `scan /dev/sdX`
//! sends. No maintained crate does this, so it is this one small unsafe module; the CDBs
//! and the decoding of what comes back are the target's pure codecs
//! (`target_emulator::initiator::{cdb, replies}`).

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use target_emulator::initiator::replies::sense_code;

use super::ScanError;
use super::medium::Medium;

/// `SG_IO` from <scsi/sg.h>.
const SG_IO: libc::c_ulong = 0x2285;
const SG_DXFER_FROM_DEV: libc::c_int = -3;
/// SCSI commands time out after a minute: an answer that slow is a dead path.
const TIMEOUT_MS: u32 = 60_000;
/// READs of at most this much at once, and less when the device's queue says so.
const MAX_READ: u64 = 1 << 20;

/// `struct sg_io_hdr` from <scsi/sg.h>.
#[repr(C)]
struct SgIoHdr {
    interface_id: libc::c_int,
    dxfer_direction: libc::c_int,
    cmd_len: libc::c_uchar,
    mx_sb_len: libc::c_uchar,
    iovec_count: libc::c_ushort,
    dxfer_len: libc::c_uint,
    dxferp: *mut libc::c_void,
    cmdp: *const libc::c_uchar,
    sbp: *mut libc::c_uchar,
    timeout: libc::c_uint,
    flags: libc::c_uint,
    pack_id: libc::c_int,
    usr_ptr: *mut libc::c_void,
    status: libc::c_uchar,
    masked_status: libc::c_uchar,
    msg_status: libc::c_uchar,
    sb_len_wr: libc::c_uchar,
    host_status: libc::c_ushort,
    driver_status: libc::c_ushort,
    resid: libc::c_int,
    duration: libc::c_uint,
    info: libc::c_uint,
}

/// A device opened for SG_IO.
pub struct SgDevice {
    path: PathBuf,
    file: File,
    max_read: u64,
}

impl SgDevice {
    pub fn open(path: &Path) -> Result<SgDevice, ScanError> {
        let io = |source| ScanError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        Ok(SgDevice {
            max_read: queue_limit(path).unwrap_or(MAX_READ).clamp(4096, MAX_READ),
            path: path.to_path_buf(),
            file,
        })
    }

    /// Sends `cdb`, reading at most `want` bytes; the data that came back.
    fn send(&self, command: &'static str, cdb: &[u8], want: u32) -> Result<Vec<u8>, ScanError> {
        let mut data = vec![0u8; want as usize];
        let mut sense = [0u8; 64];
        let mut hdr = SgIoHdr {
            interface_id: b'S' as libc::c_int,
            dxfer_direction: SG_DXFER_FROM_DEV,
            cmd_len: cdb.len() as libc::c_uchar,
            mx_sb_len: sense.len() as libc::c_uchar,
            iovec_count: 0,
            dxfer_len: want,
            dxferp: data.as_mut_ptr().cast(),
            cmdp: cdb.as_ptr(),
            sbp: sense.as_mut_ptr(),
            timeout: TIMEOUT_MS,
            flags: 0,
            pack_id: 0,
            usr_ptr: std::ptr::null_mut(),
            status: 0,
            masked_status: 0,
            msg_status: 0,
            sb_len_wr: 0,
            host_status: 0,
            driver_status: 0,
            resid: 0,
            duration: 0,
            info: 0,
        };
        // SAFETY: `hdr` points at `cdb`, `data` and `sense`, which outlive the call and
        // are as long as the lengths it gives; the kernel writes only within them.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), SG_IO, &mut hdr as *mut SgIoHdr) };
        if r < 0 {
            return Err(ScanError::Io {
                path: format!("{} (SG_IO {command})", self.path.display()),
                source: std::io::Error::last_os_error(),
            });
        }
        if hdr.status != 0 {
            let code = sense_code(&sense[..usize::from(hdr.sb_len_wr)]).unwrap_or_default();
            return Err(ScanError::Check {
                command,
                status: hdr.status,
                key: code.key,
                asc: code.asc,
                ascq: code.ascq,
            });
        }
        if hdr.host_status != 0 || (hdr.driver_status & 0x07) != 0 {
            return Err(ScanError::Answer(format!(
                "{command} on {}: host status {:#x}, driver status {:#x}",
                self.path.display(),
                hdr.host_status,
                hdr.driver_status
            )));
        }
        let got = (want as usize).saturating_sub(hdr.resid.max(0) as usize);
        data.truncate(got);
        Ok(data)
    }
}

/// The device's largest request, from sysfs (`queue/max_sectors_kb`), when it says.
fn queue_limit(path: &Path) -> Option<u64> {
    let real = std::fs::canonicalize(path).ok()?;
    let name = real.file_name()?.to_str()?;
    let kb = std::fs::read_to_string(format!("/sys/block/{name}/queue/max_sectors_kb")).ok()?;
    kb.trim().parse::<u64>().ok().map(|kb| kb * 1024)
}

impl Medium for SgDevice {
    async fn command(
        &mut self,
        command: &'static str,
        cdb: &[u8],
        want: u32,
    ) -> Result<Vec<u8>, ScanError> {
        self.send(command, cdb, want)
    }

    fn max_read_bytes(&self) -> u64 {
        self.max_read
    }
}
