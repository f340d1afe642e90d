//! Write tracking (DESIGN.md §13, "In"): writes through our iSCSI target to a managed
//! volume mark a persistent dirty bitmap, so that its next incremental reads only the
//! blocks written since its parent (and still compares them, so a rewrite with the
//! same bytes stays unchanged). A crash invalidates the bitmap; the incremental then
//! compares everything, and its record says which it did (`change_source`).
//!
//! `format` is the file, `tracker` one volume's tracking, `lun` the exported unit that
//! marks it; `Trackers` keeps one tracker per volume for the server's life and writes
//! their files within the tracking window.

mod format;
mod lun;
mod tracker;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use lun::TrackedLun;
pub use tracker::{Taken, WriteTracker, dirty_path};

use crate::sync::lock;

/// How long a written block may stay only in memory when the host does not ask for
/// durability, by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    #[error("write tracking file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl TrackingError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> TrackingError {
        TrackingError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The server's trackers, by volume id, and the thread that persists them.
pub struct Trackers {
    map: Mutex<HashMap<String, Arc<WriteTracker>>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl Trackers {
    /// Trackers whose files are written at least every `window`.
    pub fn start(window: Duration) -> Arc<Trackers> {
        let trackers = Arc::new(Trackers {
            map: Mutex::new(HashMap::new()),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            flusher: Mutex::new(None),
        });
        let weak = Arc::downgrade(&trackers);
        let stop = trackers.stop.clone();
        let handle = std::thread::Builder::new()
            .name("write-tracking".into())
            .spawn(move || {
                loop {
                    let stopped = lock(&stop.0);
                    let (stopped, _) = stop
                        .1
                        .wait_timeout_while(stopped, window, |s| !*s)
                        .unwrap_or_else(|p| p.into_inner());
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    match weak.upgrade() {
                        Some(t) => t.persist_all(),
                        None => return,
                    }
                }
            })
            .expect("spawning the write-tracking thread");
        *lock(&trackers.flusher) = Some(handle);
        trackers
    }

    /// The tracker of a managed volume (opened from its file the first time).
    pub fn tracker(&self, volume_id: &str, volume_path: &Path) -> Arc<WriteTracker> {
        lock(&self.map)
            .entry(volume_id.to_string())
            .or_insert_with(|| Arc::new(WriteTracker::open(volume_path)))
            .clone()
    }

    /// A deleted volume's tracking goes with it.
    pub fn forget(&self, volume_id: &str, volume_path: &Path) {
        match lock(&self.map).remove(volume_id) {
            Some(t) => t.remove(),
            None => {
                let _ = std::fs::remove_file(dirty_path(volume_path));
            }
        }
    }

    /// Writes every tracker's file. A failure (or a panic) leaves that file in use, which
    /// is safe: its volume's next incremental compares every block. It must not stop the
    /// others, the thread or a shutdown.
    fn persist_all(&self) {
        let all: Vec<_> = lock(&self.map).values().cloned().collect();
        for t in all {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.persist())) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot persist write tracking (it stays marked in use)")
                }
                Err(_) => {
                    tracing::error!("persisting write tracking panicked (it stays marked in use)")
                }
            }
        }
    }

    /// Stops the thread and writes every file clean.
    pub fn shutdown(&self) {
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        if let Some(h) = lock(&self.flusher).take() {
            let _ = h.join();
        }
        self.persist_all();
    }
}
