//! Backup lifecycle rules (DESIGN.md §12), pure: when a policy's backups are due
//! ([`schedule`]), which backups its retention keeps ([`retention`]), and a backup's
//! exported record ([`record`]). No I/O and no clock of their own: the service gives
//! them the time.

pub mod record;
pub mod report;
pub mod retention;
pub mod schedule;

pub use record::{BACKUP_SERVICE, ExportedRecord, RecordError};
pub use retention::{Generation, Retention, plan_pruning};
pub use schedule::{Schedule, ScheduleError};
