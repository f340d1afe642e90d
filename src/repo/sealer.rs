//! Making full packs durable off the backup writer's thread.
//!
//! Storing a pack waits on the disk (fsync, rename, fsync of the directory: a few
//! milliseconds for every 4 MiB) or on the network (an S3 PUT). A writer that stored
//! each pack itself would stop taking frames for that long, its queue would fill and
//! the cores compressing would idle. The sealer stores packs on its own threads, as
//! many as the backend wants in flight, while the writer goes on; the backup waits
//! for it ([`PackSealer::wait`]) before it writes the index, so an index still never
//! names a pack that is not durable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::pack::PackBuilder;
use super::{RepoError, Repository};

/// Bytes of full packs waiting for the backend at most (8 local packs, 2 S3 ones):
/// with the packs being stored, this bounds the memory a backup holds beyond its
/// pieces in flight.
const QUEUED_BYTES: u64 = 32 << 20;

pub struct PackSealer {
    queue: Option<SyncSender<PackBuilder>>,
    threads: Vec<JoinHandle<Result<(), RepoError>>>,
    failed: Arc<AtomicBool>,
}

impl PackSealer {
    pub fn start(repo: &Repository) -> PackSealer {
        let queued = (QUEUED_BYTES / repo.pack_target_len()).max(1) as usize;
        let (queue, packs) = sync_channel::<PackBuilder>(queued);
        let packs = Arc::new(Mutex::new(packs));
        let failed = Arc::new(AtomicBool::new(false));
        let threads = (0..repo.requests_in_flight().max(1))
            .map(|i| {
                let (repo, packs, failed) = (repo.clone(), packs.clone(), failed.clone());
                std::thread::Builder::new()
                    .name(format!("pack-sealer-{i}"))
                    .spawn(move || store_packs(&repo, &packs, &failed))
                    .expect("spawning a pack sealer thread")
            })
            .collect();
        PackSealer {
            queue: Some(queue),
            threads,
            failed,
        }
    }

    /// Queues a full pack to be stored. An earlier pack's failure is returned here as
    /// soon as it is known, so a backup on a failing disk or endpoint stops early.
    pub fn seal(&mut self, pack: PackBuilder) -> Result<(), RepoError> {
        if self.failed.load(Ordering::SeqCst) {
            return self.join();
        }
        match self.queue.as_ref().map(|q| q.send(pack)) {
            Some(Ok(())) => Ok(()),
            // Every thread is gone (a panic): join re-raises it here.
            Some(Err(_)) | None => self.join(),
        }
    }

    /// Waits until every queued pack is durable, or returns the first failure.
    pub fn wait(mut self) -> Result<(), RepoError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), RepoError> {
        self.queue = None;
        let mut outcome = Ok(());
        let mut panic = None;
        for thread in self.threads.drain(..) {
            match thread.join() {
                Ok(Err(e)) if outcome.is_ok() => outcome = Err(e),
                Ok(_) => {}
                Err(p) => panic = Some(p),
            }
        }
        // A panic while storing stays a panic, raised on the backup's own thread,
        // where the job's panic handling already is.
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        outcome
    }
}

/// One sealer thread: stores packs until the queue closes. After any thread fails, the
/// rest are dropped unstored: the backup fails and its packs are never named.
fn store_packs(
    repo: &Repository,
    packs: &Mutex<Receiver<PackBuilder>>,
    failed: &AtomicBool,
) -> Result<(), RepoError> {
    loop {
        let next = match packs.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return Ok(()),
        };
        let Ok(pack) = next else { return Ok(()) };
        if failed.load(Ordering::SeqCst) {
            continue;
        }
        if let Err(e) = repo.put_pack(pack) {
            failed.store(true, Ordering::SeqCst);
            return Err(e);
        }
    }
}

impl Drop for PackSealer {
    /// A backup that fails elsewhere still waits for packs being stored, so nothing
    /// writes into the repository after its job has ended.
    fn drop(&mut self) {
        self.queue = None;
        // The backup is failing already and reports its own error; a store failure
        // or panic behind it is only logged.
        for thread in self.threads.drain(..) {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "storing a pack of a failed backup"),
                Err(_) => tracing::error!("a pack sealer panicked during a failed backup"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::pack::EncodedFrame;
    use crate::repo::{Codec, Repository};

    #[test]
    fn sealed_packs_are_durable_and_readable_after_wait() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open_or_create(dir.path()).unwrap();
        let mut sealer = PackSealer::start(&repo);
        let mut locations = Vec::new();
        for i in 0..20u8 {
            let mut pack = PackBuilder::new(crate::repo::pack::LOCAL_PACK_TARGET_LEN);
            let raw = vec![i; 8192];
            let loc = pack
                .append(&EncodedFrame::encode(&raw, Codec::Zstd).unwrap())
                .unwrap();
            locations.push((loc, raw));
            sealer.seal(pack).unwrap();
        }
        sealer.wait().unwrap();
        for (loc, raw) in locations {
            assert_eq!(repo.read_frame(&loc).unwrap(), raw);
        }
        let left = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        assert_eq!(left, 0, "nothing is left under tmp/");
    }

    #[test]
    fn a_failed_seal_is_reported_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open_or_create(dir.path()).unwrap();
        let mut sealer = PackSealer::start(&repo);
        // `packs/` becomes a file: no pack can be renamed into it.
        let packs = dir.path().join("packs");
        std::fs::remove_dir_all(&packs).unwrap();
        std::fs::write(&packs, b"in the way").unwrap();
        sealer
            .seal(PackBuilder::new(crate::repo::pack::LOCAL_PACK_TARGET_LEN))
            .unwrap();
        let mut outcome = Ok(());
        for _ in 0..50 {
            outcome = sealer.seal(PackBuilder::new(crate::repo::pack::LOCAL_PACK_TARGET_LEN));
            if outcome.is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let outcome = outcome.and_then(|()| sealer.wait());
        assert!(outcome.is_err(), "the failure reaches the writer");
        let left = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        assert_eq!(left, 0, "no pack of the failed backup is left under tmp/");
    }
}
