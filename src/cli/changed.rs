//! `blockdelta changed-blocks FIRST SECOND`: the blocks changed between two backups,
//! from metadata alone, fetched page by page (or as one stream with --stream).

use super::Channel;
use clap::Args;

use super::output::{ExtentListing, print_extents};
use blockdelta::api::pb;
use blockdelta::api::pb::backup_service_client::BackupServiceClient;

#[derive(Args)]
pub struct ChangedBlocksArgs {
    /// The older backup.
    first: String,
    /// The newer backup, an incremental of the same chain.
    second: String,
    /// Change block size: a power of two from 4096 to 1048576 bytes.
    #[arg(long, default_value_t = 4096)]
    block_size: u64,
    /// First block (in --block-size units) to list from.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Stop after this many extents (the output then ends with a page token).
    #[arg(long)]
    max: Option<usize>,
    /// Continue a listing where an earlier one stopped.
    #[arg(long)]
    page_token: Option<String>,
    /// Use the server-streaming RPC instead of paging.
    #[arg(long, conflicts_with = "max")]
    stream: bool,
    /// Write the changed blocks' bytes (as of SECOND, through GetChangedBlockData) into
    /// FILE: a sparse image of the volume's size, holding only them at their offsets.
    #[arg(long, conflicts_with_all = ["max", "page_token", "stream"])]
    out: Option<std::path::PathBuf>,
}

/// What to list, as the RPC that lists it takes it.
pub enum Listing {
    Changed(pb::ListChangedBlocksRequest),
    Allocated(pb::ListAllocatedBlocksRequest),
}

/// Pages through a listing until it ends or `max` extents are in hand.
pub async fn fetch(
    c: &mut BackupServiceClient<Channel>,
    mut listing: Listing,
    max: usize,
    stream: bool,
) -> anyhow::Result<ExtentListing> {
    let what = match &listing {
        Listing::Changed(r) if r.first_backup_id.is_empty() => {
            format!("blocks changed by backup {}", r.second_backup_id)
        }
        Listing::Changed(r) => format!(
            "blocks changed from backup {} to {}",
            r.first_backup_id, r.second_backup_id
        ),
        Listing::Allocated(r) => format!("blocks allocated in backup {}", r.backup_id),
    };
    let mut out = ExtentListing {
        what,
        first_backup_id: String::new(),
        second_backup_id: String::new(),
        block_size: 0,
        volume_size: 0,
        total_blocks: 0,
        extents: Vec::new(),
        next_page_token: String::new(),
    };
    let take = |page: pb::BlockExtents, out: &mut ExtentListing| {
        out.first_backup_id = page.first_backup_id;
        out.second_backup_id = page.second_backup_id;
        out.block_size = page.block_size;
        out.volume_size = page.volume_size;
        out.total_blocks = page.total_blocks;
        out.extents
            .extend(page.extents.iter().map(|e| (e.start, e.count)));
        out.next_page_token = page.next_page_token;
    };
    if stream {
        let Listing::Changed(request) = listing else {
            anyhow::bail!("only changed-block listings stream");
        };
        let mut pages = c.stream_changed_blocks(request).await?.into_inner();
        while let Some(page) = pages.message().await? {
            take(page, &mut out);
        }
        return Ok(out);
    }
    loop {
        let room = max.saturating_sub(out.extents.len()).min(100_000) as u32;
        let page = match &mut listing {
            Listing::Changed(r) => {
                r.max_results = room;
                c.list_changed_blocks(r.clone()).await?.into_inner()
            }
            Listing::Allocated(r) => {
                r.max_results = room;
                c.list_allocated_blocks(r.clone()).await?.into_inner()
            }
        };
        take(page, &mut out);
        if out.next_page_token.is_empty() || out.extents.len() >= max {
            return Ok(out);
        }
        match &mut listing {
            Listing::Changed(r) => r.page_token = out.next_page_token.clone(),
            Listing::Allocated(r) => r.page_token = out.next_page_token.clone(),
        }
    }
}

pub async fn run(channel: Channel, args: ChangedBlocksArgs, json: bool) -> anyhow::Result<()> {
    let mut c = BackupServiceClient::new(channel);
    if let Some(out) = &args.out {
        return write_image(&mut c, &args, out, json).await;
    }
    let request = pb::ListChangedBlocksRequest {
        second_backup_id: args.second,
        first_backup_id: args.first,
        block_size: args.block_size,
        starting_block_index: args.start,
        max_results: 0,
        page_token: args.page_token.unwrap_or_default(),
    };
    let max = args.max.unwrap_or(usize::MAX);
    let l = fetch(&mut c, Listing::Changed(request), max, args.stream).await?;
    print_extents(&l, json);
    Ok(())
}

/// `--out FILE`: every changed piece's bytes at its offset in a sparse file of the volume's
/// size, each checked against the blake3 the server sent with it.
async fn write_image(
    c: &mut BackupServiceClient<Channel>,
    args: &ChangedBlocksArgs,
    out: &std::path::Path,
    json: bool,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::FileExt;
    // The volume's size, from the listing (a delta with no change sends no piece).
    let head = c
        .list_changed_blocks(pb::ListChangedBlocksRequest {
            first_backup_id: args.first.clone(),
            second_backup_id: args.second.clone(),
            block_size: args.block_size,
            starting_block_index: args.start,
            max_results: 1,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    file.set_len(head.volume_size)
        .with_context(|| format!("sizing {}", out.display()))?;
    let mut pieces = c
        .get_changed_block_data(pb::GetChangedBlockDataRequest {
            first_backup_id: args.first.clone(),
            second_backup_id: args.second.clone(),
            block_size: args.block_size,
            starting_block_index: args.start,
            max_blocks: 0,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    let (mut count, mut bytes) = (0u64, 0u64);
    while let Some(piece) = pieces.message().await? {
        let sum = blake3::hash(&piece.data).to_hex().to_string();
        if sum != piece.blake3 {
            anyhow::bail!(
                "the piece at offset {} arrived damaged (blake3 {sum}, the server sent {})",
                piece.offset,
                piece.blake3
            );
        }
        file.write_all_at(&piece.data, piece.offset)
            .with_context(|| format!("writing {}", out.display()))?;
        count += 1;
        bytes += piece.data.len() as u64;
    }
    file.sync_all()
        .with_context(|| format!("flushing {}", out.display()))?;
    if json {
        outln!(
            "{}",
            serde_json::json!({"out": out.display().to_string(), "volume_size": head.volume_size,
                "pieces": count, "bytes": bytes})
        );
    } else {
        outln!(
            "{} changed bytes in {count} pieces written to {} ({} bytes, sparse)",
            bytes,
            out.display(),
            head.volume_size
        );
    }
    Ok(())
}
