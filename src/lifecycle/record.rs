//! A backup's exported record (cinder's `backup export-record`): everything another
//! server sharing the repository needs to bring the backup's catalog rows back. The
//! `backup_url` is base64 of the record's JSON followed by its blake3, so a url with
//! any byte changed is refused rather than half-read. Pure: text in, record out.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::repo::BackupManifest;

/// The `backup_service` of every record this server exports and the only one it imports.
pub const BACKUP_SERVICE: &str = "blockdelta";
const FORMAT: u32 = 1;
const CHECKSUM_LEN: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedRecord {
    pub format: u32,
    /// The repository it was exported from (`Repository::location`).
    pub repository: String,
    /// The backup's chain, oldest first, the backup itself last.
    pub chain: Vec<String>,
    /// The backup's manifest as its index holds it.
    pub manifest: BackupManifest,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("backup_url is not base64")]
    NotBase64,
    #[error("backup_url is damaged or was changed (its checksum does not match)")]
    ChecksumMismatch,
    #[error("backup_url holds no backup record: {0}")]
    NotARecord(String),
    #[error("backup_url is record format {0}; this server reads format {FORMAT}")]
    UnknownFormat(u32),
    #[error("backup_url names no chain ending in its backup")]
    NoChain,
}

impl ExportedRecord {
    pub fn new(repository: String, chain: Vec<String>, manifest: BackupManifest) -> Self {
        ExportedRecord {
            format: FORMAT,
            repository,
            chain,
            manifest,
        }
    }

    /// The `backup_url`.
    pub fn encode(&self) -> String {
        // A struct of strings, numbers and options always serialises.
        let mut body = serde_json::to_vec(self).unwrap_or_default();
        let checksum = *blake3::hash(&body).as_bytes();
        body.extend_from_slice(&checksum);
        STANDARD.encode(body)
    }

    pub fn decode(url: &str) -> Result<ExportedRecord, RecordError> {
        let bytes = STANDARD
            .decode(url.trim())
            .map_err(|_| RecordError::NotBase64)?;
        if bytes.len() <= CHECKSUM_LEN {
            return Err(RecordError::ChecksumMismatch);
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if blake3::hash(body).as_bytes() != checksum {
            return Err(RecordError::ChecksumMismatch);
        }
        let record: ExportedRecord =
            serde_json::from_slice(body).map_err(|e| RecordError::NotARecord(e.to_string()))?;
        if record.format != FORMAT {
            return Err(RecordError::UnknownFormat(record.format));
        }
        if record.chain.last() != Some(&record.manifest.id) {
            return Err(RecordError::NoChain);
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> ExportedRecord {
        let manifest = BackupManifest {
            format_version: 3,
            id: "bkp-00000000000000b2".into(),
            name: "nightly".into(),
            kind: crate::kinds::BackupKind::Incremental,
            parent_id: Some("bkp-00000000000000b1".into()),
            chain_id: "bkp-00000000000000b1".into(),
            volume: Default::default(),
            size: 1 << 20,
            compression: "zstd".into(),
            created_at: "2026-12-02T10:00:00.000Z".into(),
            completed_at: "2026-12-02T10:00:01.000Z".into(),
            content_hash: "ab".repeat(32),
            changed_blocks: 7,
            allocated_blocks: 9,
            stored_bytes: 4096,
            merged_at: None,
            change_source: None,
            read_bytes: None,
        };
        ExportedRecord::new(
            "/srv/repo".into(),
            vec!["bkp-00000000000000b1".into(), "bkp-00000000000000b2".into()],
            manifest,
        )
    }

    #[test]
    fn round_trips() {
        let r = record();
        assert_eq!(ExportedRecord::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn refuses_what_is_not_a_record() {
        assert_eq!(ExportedRecord::decode("%%%"), Err(RecordError::NotBase64));
        assert_eq!(
            ExportedRecord::decode("AAAA"),
            Err(RecordError::ChecksumMismatch)
        );
        let mut body = b"{}".to_vec();
        body.extend_from_slice(blake3::hash(b"{}").as_bytes());
        assert!(matches!(
            ExportedRecord::decode(&STANDARD.encode(body)),
            Err(RecordError::NotARecord(_))
        ));
        let mut headless = record();
        headless.chain.pop();
        assert_eq!(
            ExportedRecord::decode(&headless.encode()),
            Err(RecordError::NoChain)
        );
    }

    proptest! {
        /// Any one byte of the decoded url changed: refused, never read as a record.
        #[test]
        fn one_changed_byte_is_refused(at in 0usize..10_000, xor in 1u8..=255) {
            let url = record().encode();
            let mut bytes = STANDARD.decode(&url).unwrap();
            let at = at % bytes.len();
            bytes[at] ^= xor;
            prop_assert!(ExportedRecord::decode(&STANDARD.encode(bytes)).is_err());
        }

        /// Any one character of the url itself changed: refused too.
        #[test]
        fn one_changed_character_is_refused(at in 0usize..10_000, c in prop::char::range('+', 'z')) {
            let url = record().encode();
            let at = at % url.len();
            let mut chars: Vec<char> = url.chars().collect();
            prop_assume!(chars[at] != c);
            chars[at] = c;
            let changed: String = chars.into_iter().collect();
            prop_assert!(ExportedRecord::decode(&changed).is_err());
        }
    }
}
