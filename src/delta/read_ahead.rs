//! Read-ahead for delta volumes: when an initiator reads sequentially, the frames
//! of the next few MiB of changed blocks are fetched, verified and decompressed on
//! a small pool of threads into the chain reader's cache, so the reads that follow
//! find them there instead of waiting for a pack read and zstd one frame at a time.
//!
//! Requests are hints: when the queue is full they are dropped, never waited for.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use super::map::DeltaMap;
use crate::repo::ChainReader;

/// Tracking blocks fetched per job: 1 MiB, so one window spreads over the pool.
const JOB_BLOCKS: u64 = 256;
/// Jobs waiting at most; beyond that a hint is dropped.
const QUEUE: usize = 64;

/// What to fetch: the changed blocks of `map` in [first, end) as of `backup_id`.
pub struct Job {
    pub reader: Arc<ChainReader>,
    pub backup_id: Arc<str>,
    pub map: Arc<DeltaMap>,
    pub first: u64,
    pub end: u64,
}

pub struct ReadAheadPool {
    tx: SyncSender<Job>,
}

impl ReadAheadPool {
    /// Starts `threads` fetcher threads; they end when the pool is dropped.
    pub fn new(threads: usize) -> Arc<ReadAheadPool> {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("read-ahead-{i}"))
                .spawn(move || fetch_jobs(&rx));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "read-ahead thread did not start");
            }
        }
        Arc::new(ReadAheadPool { tx })
    }

    /// Queues the changed blocks in [first, end) in 1 MiB jobs; drops what does
    /// not fit.
    pub fn hint(&self, job: Job) {
        let mut at = job.first;
        while at < job.end {
            let end = (at + JOB_BLOCKS).min(job.end);
            let part = Job {
                reader: job.reader.clone(),
                backup_id: job.backup_id.clone(),
                map: job.map.clone(),
                first: at,
                end,
            };
            match self.tx.try_send(part) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => return,
            }
            at = end;
        }
    }
}

fn fetch_jobs(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let rx = crate::sync::lock(rx);
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        fetch(&job);
    }
}

/// Loads each frame holding a changed block of the job once. Errors are left for
/// the read that needs the block, which reports them with its own sense data.
fn fetch(job: &Job) {
    let factor = job.map.block_size() / crate::repo::TRACKING_BLOCK_SIZE;
    let mut last = None;
    for t in job.first..job.end {
        if !job.map.is_changed(t / factor) {
            continue;
        }
        let Ok(Some((loc, _))) = job.reader.locate(&job.backup_id, t) else {
            continue;
        };
        let key = (loc.pack, loc.offset);
        if last == Some(key) {
            continue;
        }
        last = Some(key);
        let _ = job.reader.frame(&loc);
    }
}
