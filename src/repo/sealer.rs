//! Making full packs durable off the backup writer's thread.
//!
//! Sealing a pack (fsync, rename into `packs/`, fsync of the directory) waits for the
//! disk: a few milliseconds for every 4 MiB. A writer that sealed each pack itself would
//! stop taking frames for that long, its queue would fill and the cores compressing
//! would idle. The sealer does it on its own thread while the writer goes on; the
//! backup waits for it ([`PackSealer::wait`]) before it writes the index, so an index
//! still never names a pack that is not durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::RepoError;
use super::pack::PackWriter;

/// Full packs waiting for the disk at most: they are in the page cache already, so
/// this bounds how far the writer runs ahead of durable, not memory.
const QUEUED_PACKS: usize = 8;

pub struct PackSealer {
    queue: Option<SyncSender<PackWriter>>,
    thread: Option<JoinHandle<Result<(), RepoError>>>,
    failed: Arc<AtomicBool>,
}

impl PackSealer {
    pub fn start() -> PackSealer {
        let (queue, packs) = sync_channel::<PackWriter>(QUEUED_PACKS);
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let thread = std::thread::Builder::new()
            .name("pack-sealer".into())
            .spawn(move || {
                let mut outcome = Ok(());
                for pack in packs {
                    if outcome.is_ok() {
                        outcome = pack.finish().map(drop);
                        if outcome.is_err() {
                            flag.store(true, Ordering::SeqCst);
                        }
                    } else {
                        // After a failure the backup fails: the rest never reach packs/.
                        pack.abandon();
                    }
                }
                outcome
            })
            .expect("spawning the pack sealer thread");
        PackSealer {
            queue: Some(queue),
            thread: Some(thread),
            failed,
        }
    }

    /// Queues a full pack to be made durable. An earlier pack's failure is returned
    /// here as soon as it is known, so a backup on a failing disk stops early.
    pub fn seal(&mut self, pack: PackWriter) -> Result<(), RepoError> {
        if self.failed.load(Ordering::SeqCst) {
            pack.abandon();
            return self.join();
        }
        match self.queue.as_ref().map(|q| q.send(pack)) {
            Some(Ok(())) => Ok(()),
            // The thread is gone (it panicked): join re-raises its panic here.
            Some(Err(unsent)) => {
                unsent.0.abandon();
                self.join()
            }
            None => self.join(),
        }
    }

    /// Waits until every queued pack is durable, or returns the first failure.
    pub fn wait(mut self) -> Result<(), RepoError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), RepoError> {
        self.queue = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            // A panic while sealing stays a panic, raised on the backup's own thread,
            // where the job's panic handling already is.
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Ok(()),
        }
    }
}

impl Drop for PackSealer {
    /// A backup that fails elsewhere still waits for packs being sealed, so nothing
    /// writes into the repository after its job has ended.
    fn drop(&mut self) {
        self.queue = None;
        // The backup is failing already and reports its own error; a seal failure
        // or panic behind it is only logged.
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "sealing a pack of a failed backup"),
                Err(_) => tracing::error!("the pack sealer panicked during a failed backup"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::pack::{EncodedFrame, read_frame};
    use crate::repo::{Codec, Repository};

    #[test]
    fn sealed_packs_are_durable_and_readable_after_wait() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open_or_create(dir.path()).unwrap();
        let mut sealer = PackSealer::start();
        let mut locations = Vec::new();
        for i in 0..20u8 {
            let mut pack = PackWriter::create(repo.root()).unwrap();
            let raw = vec![i; 8192];
            let loc = pack
                .append(&EncodedFrame::encode(&raw, Codec::Zstd).unwrap())
                .unwrap();
            locations.push((loc, raw));
            sealer.seal(pack).unwrap();
        }
        sealer.wait().unwrap();
        for (loc, raw) in locations {
            assert_eq!(read_frame(repo.root(), &loc).unwrap(), raw);
        }
        let left = std::fs::read_dir(repo.root().join("tmp")).unwrap().count();
        assert_eq!(left, 0, "nothing is left under tmp/");
    }

    #[test]
    fn a_failed_seal_is_reported_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open_or_create(dir.path()).unwrap();
        let mut sealer = PackSealer::start();
        let pack = PackWriter::create(repo.root()).unwrap();
        // `packs/` becomes a file: no pack can be renamed into it.
        let packs = repo.root().join("packs");
        std::fs::remove_dir_all(&packs).unwrap();
        std::fs::write(&packs, b"in the way").unwrap();
        sealer.seal(pack).unwrap();
        let mut outcome = Ok(());
        for _ in 0..50 {
            outcome = PackWriter::create(repo.root()).and_then(|p| sealer.seal(p));
            if outcome.is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let outcome = outcome.and_then(|()| sealer.wait());
        assert!(outcome.is_err(), "the failure reaches the writer");
        let left = std::fs::read_dir(repo.root().join("tmp")).unwrap().count();
        assert_eq!(left, 0, "no pack of the failed backup is left under tmp/");
    }
}
