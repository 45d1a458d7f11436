//! `netsvc-memhub --listen ADDR`: the netsvc hub of the memory workload, with a counting
//! global allocator so that the workload can read the hub's live heap exactly.
//!
//! It is the hub of `netsvc-bench role netsvc-hub` (a `Runtime` with a server `Exchange`)
//! and talks the same line protocol: `READY <addr>` once listening, then one answer per
//! command on stdin; it exits when stdin closes. Its own command is `HEAP`, answered with
//! `HEAP {"bytes":B,"blocks":N}`: the bytes requested from the allocator and not freed yet,
//! and the number of live blocks (so that a reader can add the allocator's per-block
//! overhead, which the counter cannot see).
//!
//! It is a separate binary because a global allocator is per binary: the hubs of the
//! throughput workloads must not pay for the counting (a few atomic additions per
//! allocation).

use std::alloc::System;

use anyhow::Result;
use netsvc::{Exchange, Runtime};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::{AsyncBufReadExt, BufReader};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Live heap bytes and blocks. A `realloc` adds its size change to `bytes_allocated` or
/// `bytes_deallocated` already (`bytes_reallocated` is the same change again, signed), so it
/// must not be added on top.
fn heap() -> (usize, usize) {
    let s = GLOBAL.stats();
    (
        s.bytes_allocated.saturating_sub(s.bytes_deallocated),
        s.allocations.saturating_sub(s.deallocations),
    )
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let flag = args.next();
    let (Some("--listen"), Some(listen)) = (flag.as_deref(), args.next()) else {
        anyhow::bail!("usage: netsvc-memhub --listen ADDR");
    };
    // One thread, as `role netsvc-hub`.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let rt = Runtime::new();
        let ex = Exchange::server(&rt).build()?;
        let addr = ex.listen(&listen).await?;
        println!("READY {addr}");
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            if line == "HEAP" {
                let (bytes, blocks) = heap();
                println!("HEAP {{\"bytes\":{bytes},\"blocks\":{blocks}}}");
            }
        }
        // Stdin closed: the orchestrator is gone; so are we.
        Ok(())
    })
}
