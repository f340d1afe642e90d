//! Sparse files and block devices as the kernel describes them: a device's size, and
//! where data and holes are (SEEK_DATA / SEEK_HOLE). One home for both, shared by
//! [`crate::FileLun`] (GET LBA STATUS) and the blockdelta service's backup reader, so
//! the extents a host scans and the ones a backup skips are found the same way.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;

/// Size in bytes of a regular file (its length) or a block device (its end).
pub fn device_size(file: &File) -> std::io::Result<u64> {
    let meta = file.metadata()?;
    if meta.file_type().is_block_device() {
        let mut f = file;
        return f.seek(SeekFrom::End(0));
    }
    Ok(meta.len())
}

/// The first byte at or after `from` that may hold data; `None` when only a hole
/// follows. An error means the file system cannot say (treat all as data).
pub fn next_data(file: &File, from: u64) -> std::io::Result<Option<u64>> {
    seek(file, from, libc::SEEK_DATA)
}

/// The first byte at or after `from` in a hole (the end of the file counts as one).
pub fn next_hole(file: &File, from: u64) -> std::io::Result<Option<u64>> {
    seek(file, from, libc::SEEK_HOLE)
}

/// `lseek(fd, from, whence)`, with ENXIO ("nothing of that kind after `from`") as `None`.
fn seek(file: &File, from: u64, whence: libc::c_int) -> std::io::Result<Option<u64>> {
    // SAFETY: lseek on a file descriptor the caller owns; no memory is passed.
    let r = unsafe { libc::lseek(file.as_raw_fd(), from as libc::off_t, whence) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn data_and_holes_of_a_sparse_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        f.set_len(4 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 2 << 20).unwrap();
        assert_eq!(device_size(&f).unwrap(), 4 << 20);
        let data = next_data(&f, 0).unwrap().unwrap();
        assert!(data <= 2 << 20, "{data}");
        let hole = next_hole(&f, 2 << 20).unwrap().unwrap();
        assert!(hole >= (2 << 20) + 4096, "{hole}");
        // Past the last data there is none; the end of the file is a hole.
        if data == 2 << 20 {
            assert_eq!(next_data(&f, (3 << 20) as u64).unwrap(), None);
        }
        assert_eq!(next_hole(&f, 4 << 20).unwrap(), None);
    }
}
