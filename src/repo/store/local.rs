//! The repository in a local directory: each key is a file under the root, the
//! layout every existing repository already has.

use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{ObjectInfo, ObjectStore};
use crate::faults::fault;
use crate::repo::RepoError;

/// Objects at least this large are written with O_DIRECT where the filesystem allows:
/// packs are never read back while a backup runs, and a buffered write costs the kernel
/// a copy and its writeback about as much CPU as compressing the data (measured: ~2 s a
/// GiB on a 2-core VM), besides evicting the page cache a restore or delta read could use.
const DIRECT_MIN: usize = 1 << 20;
const DIRECT_ALIGN: usize = 4096;

#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn open(root: &Path) -> Result<LocalStore, RepoError> {
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| RepoError::io(&tmp, e))?;
        Ok(LocalStore {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Leftovers of puts a crash interrupted: temp files nothing names.
    pub fn clear_temporaries(&self) {
        let tmp = self.root.join("tmp");
        for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let path = entry.path();
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover temporary file");
            }
        }
    }

    fn put_via(&self, tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        fault!("repo.store.create", |e| e);
        let (mut file, direct) = create_for_write(tmp, bytes)?;
        fault!("repo.store.write", |e| e);
        if direct {
            write_direct(&mut file, bytes)?;
        } else {
            file.write_all(bytes)?;
        }
        fault!("repo.store.fsync", |e| e);
        file.sync_all()?;
        drop(file);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        fault!("repo.store.rename", |e| e);
        std::fs::rename(tmp, path)
    }
}

impl ObjectStore for LocalStore {
    fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<(), RepoError> {
        let path = self.path(key);
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{:016x}.tmp", rand::random::<u64>()));
        if let Err(e) = self.put_via(&tmp, &path, &bytes) {
            // Cleanup only: a leftover under tmp/ is removed by the next collection.
            let _ = std::fs::remove_file(&tmp);
            return Err(RepoError::io(&path, e));
        }
        fsync_dir(path.parent().unwrap_or(Path::new(".")))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, RepoError> {
        let path = self.path(key);
        std::fs::read(&path).map_err(|e| not_found_or_io(&path, e))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, RepoError> {
        let path = self.path(key);
        let file = File::open(&path).map_err(|e| not_found_or_io(&path, e))?;
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        file.read_exact_at(&mut buf, range.start).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                RepoError::corrupt(path.display().to_string(), "shorter than its index says")
            } else {
                RepoError::io(&path, e)
            }
        })?;
        Ok(buf)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, RepoError> {
        let mut out = Vec::new();
        let start = self.path(prefix.trim_end_matches('/'));
        let mut pending = vec![start];
        while let Some(dir) = pending.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(RepoError::io(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| RepoError::io(&dir, e))?;
                let path = entry.path();
                let meta = entry.metadata().map_err(|e| RepoError::io(&path, e))?;
                if meta.is_dir() {
                    pending.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    out.push(ObjectInfo {
                        key: rel.to_string_lossy().into_owned(),
                        size: meta.len(),
                        modified: meta.modified().ok(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), RepoError> {
        let path = self.path(key);
        fault!("repo.store.delete", |e| RepoError::io(&path, e));
        match std::fs::remove_file(&path) {
            Ok(()) => fsync_dir(path.parent().unwrap_or(Path::new("."))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RepoError::io(&path, e)),
        }
    }

    fn append_log(&self, key: &str, line: &str) -> Result<(), RepoError> {
        let path = self.path(key);
        fault!("repo.audit.append", |e| RepoError::io(&path, e));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| RepoError::io(&path, e))?;
        f.write_all(format!("{line}\n").as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| RepoError::io(&path, e))
    }

    fn read_log(&self, key: &str) -> Result<String, RepoError> {
        let path = self.path(key);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(RepoError::io(&path, e)),
        }
    }

    fn describe(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn requests_in_flight(&self) -> usize {
        1
    }

    fn coalesce_gap(&self) -> u64 {
        64 << 10
    }

    fn pack_target_len(&self) -> u64 {
        crate::repo::pack::LOCAL_PACK_TARGET_LEN
    }
}

fn not_found_or_io(path: &Path, e: std::io::Error) -> RepoError {
    if e.kind() == std::io::ErrorKind::NotFound {
        RepoError::NotFound {
            object: path.display().to_string(),
        }
    } else {
        RepoError::io(path, e)
    }
}

/// Creates `path` for writing: with O_DIRECT when `bytes` is large and its buffer
/// aligned for it, buffered otherwise or where the filesystem refuses O_DIRECT (tmpfs,
/// some FUSE filesystems). Returns whether the file is direct.
fn create_for_write(path: &Path, bytes: &[u8]) -> std::io::Result<(File, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    let aligned = bytes.as_ptr().align_offset(DIRECT_ALIGN) == 0;
    if bytes.len() < DIRECT_MIN || !aligned {
        return Ok((options.open(path)?, false));
    }
    match options.clone().custom_flags(libc::O_DIRECT).open(path) {
        Ok(file) => Ok((file, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((options.open(path)?, false)),
        Err(e) => Err(e),
    }
}

/// The aligned head of `bytes` through O_DIRECT, then the tail of less than a block
/// buffered (O_DIRECT cleared): the file ends exactly where the data does.
fn write_direct(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let head = bytes.len() / DIRECT_ALIGN * DIRECT_ALIGN;
    file.write_all(&bytes[..head])?;
    if head < bytes.len() {
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor this function's caller owns; no memory is passed.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0
            // SAFETY: as above.
            || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        file.write_all(&bytes[head..])?;
    }
    Ok(())
}

pub fn fsync_dir(dir: &Path) -> Result<(), RepoError> {
    fault!("repo.dir.fsync", |e| RepoError::io(dir, e));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| RepoError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_are_whole_lists_recurse_and_deletes_forgive_absence() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        // Large and aligned: the O_DIRECT path with a buffered tail.
        let mut backing = vec![0u8; (3 << 20) + 2 * DIRECT_ALIGN];
        let at = backing.as_ptr().align_offset(DIRECT_ALIGN);
        backing[at..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 251) as u8);
        let big = bytes::Bytes::from(backing).slice(at..at + (3 << 20) + 100);
        store.put("packs/ab/x.pack", big.clone()).unwrap();
        store
            .put("backups/b.index", bytes::Bytes::from_static(b"small"))
            .unwrap();
        assert_eq!(store.get("packs/ab/x.pack").unwrap(), big.to_vec());
        assert_eq!(
            store.get_range("packs/ab/x.pack", 10..20).unwrap(),
            big[10..20]
        );
        assert!(matches!(
            store.get_range("backups/b.index", 3..10),
            Err(RepoError::Corrupt { .. })
        ));
        let keys: Vec<String> = store
            .list("packs/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["packs/ab/x.pack"]);
        store.delete("packs/ab/x.pack").unwrap();
        store.delete("packs/ab/x.pack").unwrap();
        assert!(matches!(
            store.get("packs/ab/x.pack"),
            Err(RepoError::NotFound { .. })
        ));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
