//! The scan's commands over the built-in initiator: one session to the LUN of an
//! `iscsi://` URL (GET LBA STATUS(32)'s last 16 CDB bytes travel in an Extended-CDB AHS).

use std::net::SocketAddr;

use target_emulator::ChapCredentials;
use target_emulator::initiator::{Initiator, LoginOptions};

use super::ScanError;
use super::medium::Medium;

const READ_PIECE: u64 = 1 << 20;
/// The initiator name `scan` logs in as unless told another.
pub const INITIATOR_NAME: &str = "iqn.2026-11.io.blockdelta:scan";

/// `iscsi://HOST:PORT/IQN/LUN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IscsiTarget {
    pub portal: SocketAddr,
    pub iqn: String,
    pub lun: u8,
}

impl IscsiTarget {
    pub fn parse(url: &str) -> Result<IscsiTarget, ScanError> {
        let bad = || ScanError::BadTarget(url.to_string());
        let rest = url.strip_prefix("iscsi://").ok_or_else(bad)?;
        let mut parts = rest.splitn(3, '/');
        let portal = parts.next().ok_or_else(bad)?;
        let iqn = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
        let lun = parts.next().unwrap_or("0");
        Ok(IscsiTarget {
            portal: portal.parse().map_err(|_| bad())?,
            iqn: iqn.to_string(),
            lun: lun.parse().map_err(|_| bad())?,
        })
    }
}

/// A logged-in session to one LUN.
pub struct IscsiMedium {
    initiator: Initiator,
}

impl IscsiMedium {
    pub async fn login(
        target: &IscsiTarget,
        initiator_name: &str,
        chap: Option<ChapCredentials>,
    ) -> Result<IscsiMedium, ScanError> {
        let opts = LoginOptions {
            initiator_name: initiator_name.into(),
            target_name: Some(target.iqn.clone()),
            chap,
            ..Default::default()
        };
        let mut initiator = Initiator::connect(target.portal, &opts)
            .await
            .map_err(iscsi)?;
        initiator.use_lun(target.lun);
        Ok(IscsiMedium { initiator })
    }
}

fn iscsi(e: impl std::fmt::Display) -> ScanError {
    ScanError::Iscsi(e.to_string())
}

impl Medium for IscsiMedium {
    async fn command(
        &mut self,
        command: &'static str,
        cdb: &[u8],
        want: u32,
    ) -> Result<Vec<u8>, ScanError> {
        let r = self
            .initiator
            .command(cdb, &[], want)
            .await
            .map_err(iscsi)?;
        if r.status != 0 {
            let (key, asc, ascq) = r.sense_code().unwrap_or_default();
            return Err(ScanError::Check {
                command,
                status: r.status,
                key,
                asc,
                ascq,
            });
        }
        Ok(r.data)
    }

    fn max_read_bytes(&self) -> u64 {
        READ_PIECE
    }

    async fn close(self) {
        let _ = self.initiator.logout().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let t =
            IscsiTarget::parse("iscsi://127.0.0.1:3260/iqn.2026-11.io.blockdelta:vol-1/0").unwrap();
        assert_eq!(t.portal, "127.0.0.1:3260".parse().unwrap());
        assert_eq!(t.iqn, "iqn.2026-11.io.blockdelta:vol-1");
        assert_eq!(t.lun, 0);
        assert_eq!(
            IscsiTarget::parse("iscsi://127.0.0.1:3260/iqn.x")
                .unwrap()
                .lun,
            0
        );
        for bad in [
            "/dev/sda",
            "iscsi://host/iqn",
            "iscsi://1.2.3.4:3260/",
            "iscsi://1.2.3.4:3260/i/x",
        ] {
            assert!(IscsiTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
