//! Where a scan's SCSI commands go: the built-in iSCSI initiator (`iscsi`) or SG_IO on an
//! attached disk (`sgio`). The walk and the reads above them are the same for both.

use super::ScanError;

#[allow(async_fn_in_trait)] // used with static dispatch only, in this crate
pub trait Medium {
    /// Sends a CDB that reads at most `want` bytes; the data. A CHECK CONDITION is
    /// `ScanError::Check`, naming `command`.
    async fn command(
        &mut self,
        command: &'static str,
        cdb: &[u8],
        want: u32,
    ) -> Result<Vec<u8>, ScanError>;

    /// The largest READ the medium takes at once, in bytes.
    fn max_read_bytes(&self) -> u64;

    /// Ends the session, if there is one.
    async fn close(self)
    where
        Self: Sized,
    {
    }
}
