//! The delta use case, whole: validate a pair of backups (DESIGN.md §6), compute
//! its map from bitmaps, list its blocks, and open a delta volume over it. The API
//! (CreateVolume, the listings, CSI) and the exports (attaching a delta volume)
//! all come through here, so the rules run in one place and the same way.

use crate::identity::Caller;
use std::sync::Arc;

use super::listing::{Listing, ListingKind};
use super::read_ahead::ReadAheadPool;
use super::{DeltaError, DeltaMap, DeltaRequest, DeltaSource, DeltaVolume, rules};
use crate::catalog::DeltaSourceRecord;
use crate::engine::Service;

pub struct Deltas {
    svc: Arc<Service>,
    /// Frames fetched ahead of sequential readers, shared by every delta volume.
    read_ahead: Arc<ReadAheadPool>,
}

/// A validated delta: which backups, and its changed blocks.
pub struct DeltaPlan {
    pub source: DeltaSource,
    pub map: DeltaMap,
}

impl DeltaPlan {
    pub fn volume_size(&self) -> u64 {
        self.source.volume_size()
    }

    /// What the catalog keeps of a delta volume's source.
    pub fn source_record(&self) -> DeltaSourceRecord {
        DeltaSourceRecord {
            volume_id: String::new(),
            first_backup_id: self.source.first.id.clone(),
            second_backup_id: self.source.second.id.clone(),
            change_block_size: self.source.change_block_size,
            changed_bytes: self.map.changed_bytes(),
        }
    }
}

impl Deltas {
    pub fn new(svc: Arc<Service>) -> Arc<Deltas> {
        Arc::new(Deltas {
            svc,
            read_ahead: ReadAheadPool::new(crate::engine::worker_count()),
        })
    }

    /// Checks a CreateVolume request's source and computes its delta. Reads only
    /// catalog records and index heads.
    pub fn plan(&self, caller: &Caller, request: &DeltaRequest) -> Result<DeltaPlan, DeltaError> {
        let source = rules::check_request(self.svc.catalog(), caller.visible(), request)?;
        let map = self.compute(&source)?;
        Ok(DeltaPlan { source, map })
    }

    /// The source a delta volume was made from, if it is one.
    pub fn source_of(&self, volume_id: &str) -> Option<DeltaSourceRecord> {
        self.svc.catalog().delta_source(volume_id).ok().flatten()
    }

    /// The blocks changed from `first` (empty: the second's parent) to `second`, in
    /// blocks of `block_size` bytes (0 = 4096). Reads bitmaps only.
    pub fn changed(
        &self,
        caller: &Caller,
        first: &str,
        second: &str,
        block_size: u64,
    ) -> Result<Listing, DeltaError> {
        let block_size = rules::change_block_size(block_size)?;
        if first.is_empty() {
            let backup = rules::check_single(self.svc.catalog(), caller.visible(), second)?;
            let head = self.head(second)?;
            return Ok(Listing::new(
                ListingKind::Changed,
                DeltaMap::new(head.change.clone(), backup.size, block_size),
                backup.parent_id.unwrap_or_default(),
                backup.id,
            ));
        }
        let source = rules::check_pair(
            self.svc.catalog(),
            caller.visible(),
            first,
            second,
            block_size,
        )?;
        let map = self.compute(&source)?;
        Ok(Listing::new(
            ListingKind::Changed,
            map,
            source.first.id,
            source.second.id,
        ))
    }

    /// The blocks of `backup` that are not all-zero, in blocks of `block_size` bytes.
    pub fn allocated(
        &self,
        caller: &Caller,
        backup: &str,
        block_size: u64,
    ) -> Result<Listing, DeltaError> {
        let block_size = rules::change_block_size(block_size)?;
        let record = rules::check_single(self.svc.catalog(), caller.visible(), backup)?;
        let head = self.head(backup)?;
        Ok(Listing::new(
            ListingKind::Allocated,
            DeltaMap::new(head.allocated.clone(), record.size, block_size),
            String::new(),
            record.id,
        ))
    }

    /// Any byte range of `backup` as the volume was then (zeros where unallocated), to be
    /// read chunk by chunk. Reads no data until asked.
    pub fn block_data(
        &self,
        caller: &Caller,
        backup: &str,
        offset: u64,
        length: u64,
    ) -> Result<super::block_data::BlockData, DeltaError> {
        let record = rules::check_single(self.svc.catalog(), caller.visible(), backup)?;
        super::block_data::BlockData::new(
            self.svc.chain_reader().clone(),
            record.id,
            record.size,
            offset,
            length,
        )
    }

    /// The changed extents from `first` to `second` with their bytes, in pieces, from
    /// `start_block` (in `block_size` blocks) for at most `max_blocks` (0: all).
    pub fn changed_data(
        &self,
        caller: &Caller,
        first: &str,
        second: &str,
        block_size: u64,
        range: super::block_data::ChangedRange<'_>,
    ) -> Result<super::block_data::ChangedData, DeltaError> {
        let listing = self.changed(caller, first, second, block_size)?;
        let start_block = listing.start(range.page_token, range.starting_block)?;
        let max_blocks = range.max_blocks;
        if start_block > listing.map.total_blocks() {
            return Err(DeltaError::StartOutsideVolume {
                block: start_block,
                blocks: listing.map.total_blocks(),
            });
        }
        Ok(super::block_data::ChangedData::new(
            listing,
            self.svc.chain_reader().clone(),
            start_block,
            max_blocks,
        ))
    }

    /// The delta volume of a recorded delta volume: its source checked again (a
    /// backup may have changed state since) and its map computed.
    pub fn open_volume(&self, volume_id: &str, block_size: u32) -> Result<DeltaVolume, DeltaError> {
        let source = self
            .svc
            .catalog()
            .delta_source(volume_id)?
            .ok_or_else(|| DeltaError::NoSourceRecord(volume_id.to_string()))?;
        let checked = rules::check_pair(
            self.svc.catalog(),
            None,
            &source.first_backup_id,
            &source.second_backup_id,
            source.change_block_size,
        )?;
        let map = self.compute(&checked)?;
        Ok(DeltaVolume::new(
            self.svc.chain_reader().clone(),
            &source.second_backup_id,
            Arc::new(map),
            block_size,
            volume_id.to_string(),
            Some(self.read_ahead.clone()),
        ))
    }

    /// The delta of a validated source: the union of its span's change bitmaps at
    /// its change block size. Reads only index heads (manifest and bitmaps).
    fn compute(&self, source: &DeltaSource) -> Result<DeltaMap, DeltaError> {
        let mut heads = Vec::with_capacity(source.span.len());
        for id in &source.span {
            heads.push(self.head(id)?);
        }
        Ok(DeltaMap::union(
            heads.iter().map(|h| &h.change),
            source.volume_size(),
            source.change_block_size,
        ))
    }

    fn head(&self, id: &str) -> Result<Arc<crate::repo::IndexHead>, DeltaError> {
        self.svc
            .chain_reader()
            .head(id)
            .map_err(|source| DeltaError::Repo {
                backup_id: id.to_string(),
                source,
            })
    }
}
