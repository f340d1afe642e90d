//! A backup and the part of its chain another repository lacks (`backup copy`, a
//! policy's `--copy-to`; DESIGN.md §12). Packs first, then each backup's fingerprints,
//! then its index, oldest backup first: at every moment the destination holds only
//! whole backups, and `recover` on it alone gives them back. A pack the destination has
//! is not sent again, so a chain's frames cross once, whatever is copied later.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::pack::pack_key;
use super::{RepoError, Repository, fingerprints_key_of, index_key};
use crate::faults::fault;

/// What a copy sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyCount {
    pub objects: u64,
    pub bytes: u64,
}

impl Repository {
    /// Copies the backups `chain` (oldest first, the one asked for last) of volume
    /// `volume_id` to `to`. `stop` is asked between objects (a server shutting down):
    /// `None` says it stopped, having copied only whole backups.
    pub fn copy_chain(
        &self,
        chain: &[String],
        volume_id: &str,
        to: &Repository,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<CopyCount>, RepoError> {
        let present = to.sizes_under(&["packs/", "backups/"])?;
        let mut count = CopyCount::default();
        // The volume's manifest first: what `recover` makes the volume's record from.
        // It changes (a rename, an attachment), so it goes again when it differs.
        let manifest = format!("volumes/{volume_id}.json");
        let body = self.store.get(&manifest)?;
        match to.store.get(&manifest) {
            Ok(there) if there == body => {}
            Ok(_) | Err(RepoError::NotFound { .. }) => {
                to.put_copied(&manifest, Bytes::from(body), &mut count)?
            }
            Err(e) => return Err(e),
        }
        for id in chain {
            if stop() {
                return Ok(None);
            }
            let index_name = index_key(id);
            let index_bytes = self.store.get(&index_name)?;
            let index = self.read_index(id)?;
            if present.get(&index_name) == Some(&(index_bytes.len() as u64)) {
                continue;
            }
            let packs: BTreeSet<_> = index.extents.iter().map(|e| e.frame.pack).collect();
            for pack in packs {
                let key = pack_key(&pack);
                if present.contains_key(&key) {
                    continue;
                }
                if stop() {
                    return Ok(None);
                }
                self.copy_object(&key, to, &mut count)?;
            }
            self.copy_object(&fingerprints_key_of(&index.manifest), to, &mut count)?;
            // The index last: the backup exists there from this moment.
            to.put_copied(&index_name, Bytes::from(index_bytes), &mut count)?;
        }
        Ok(Some(count))
    }

    fn copy_object(
        &self,
        key: &str,
        to: &Repository,
        count: &mut CopyCount,
    ) -> Result<(), RepoError> {
        let body = Bytes::from(self.store.get(key)?);
        to.put_copied(key, body, count)
    }

    fn put_copied(&self, key: &str, body: Bytes, count: &mut CopyCount) -> Result<(), RepoError> {
        fault!("repo.copy_chain.put", |e| RepoError::io(
            self.describe(key),
            e
        ));
        count.objects += 1;
        count.bytes += body.len() as u64;
        self.store.put(key, body)
    }
}
