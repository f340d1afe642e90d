//! Volumes as byte sources and sinks: size, sparse data ranges (SEEK_DATA /
//! SEEK_HOLE), hole punching. Regular files and block devices alike.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use target_emulator::sparse;

use super::{EngineError, InvalidRequest};

/// Size in bytes of a regular file or block device; anything else is refused.
pub fn volume_size(path: &Path) -> Result<u64, EngineError> {
    let meta = std::fs::metadata(path).map_err(|e| EngineError::io(path.display(), e))?;
    let ft = meta.file_type();
    if !ft.is_file() && !ft.is_block_device() {
        return Err(InvalidRequest::NotABlockSource {
            path: path.display().to_string(),
        }
        .into());
    }
    File::open(path)
        .and_then(|f| sparse::device_size(&f))
        .map_err(|e| EngineError::io(path.display(), e))
}

/// The byte ranges of `file` that may hold data, in order, aligned outward to
/// `align`, within `[0, size)`. Holes are skipped without reading them; a file
/// system or device that cannot say gives one range over everything.
pub fn data_ranges(file: &File, size: u64, align: u64) -> Result<Vec<(u64, u64)>, EngineError> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut pos: u64 = 0;
    while pos < size {
        let data = match sparse::next_data(file, pos) {
            Ok(Some(data)) => data,
            Ok(None) => break,                    // no data after pos
            Err(_) => return Ok(vec![(0, size)]), // SEEK_DATA unsupported here
        };
        let hole = sparse::next_hole(file, data).ok().flatten().unwrap_or(size);
        let start = (data / align) * align;
        let end = hole.div_ceil(align).saturating_mul(align).min(size);
        if start >= size {
            break;
        }
        match out.last_mut() {
            Some(last) if last.1 >= start => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
        if end <= pos {
            break;
        }
        pos = end;
    }
    Ok(out)
}

/// Deallocates `[0, len)` of a regular file so it reads as zeros, keeping its
/// size. Returns false where hole punching is not supported (block devices,
/// some file systems): the caller then writes zeros.
pub fn punch_hole(file: &File, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    // SAFETY: fallocate on a valid descriptor with in-range arguments.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            len as libc::off_t,
        )
    };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn holes_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.img");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 8 << 20).unwrap();
        f.write_all_at(&[2u8; 100], 40 << 20).unwrap();
        let ranges = data_ranges(&f, 64 << 20, 4096).unwrap();
        let covered: u64 = ranges.iter().map(|r| r.1 - r.0).sum();
        assert!(covered < 8 << 20, "{ranges:?}");
        assert!(
            ranges
                .iter()
                .any(|r| r.0 <= 8 << 20 && r.1 >= (8 << 20) + 4096)
        );
        assert!(ranges.iter().any(|r| r.0 <= 40 << 20 && r.1 > 40 << 20));
        assert_eq!(volume_size(&path).unwrap(), 64 << 20);
    }
}
