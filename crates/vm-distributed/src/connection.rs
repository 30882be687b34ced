//! The sending half of an authenticated connection: a task that owns the socket's write
//! half and writes the messages queued on a channel; and `AbortOnDrop`, which ties a
//! connection's reader task to its owner.
//!
//! # Invariants
//! - Messages are written in the order they were queued.
//! - Whatever is queued when the task wakes is encoded into one buffer (up to
//!   [`WRITE_BATCH_BYTES`]) and written with one system call, so many small messages cost one
//!   write (this is where the cluster's throughput comes from).
//! - A message larger than a frame is written as several frames (see [`crate::protocol`]);
//!   the buffer it needed is released after the write.
//! - When writing fails or every sender is dropped, the task ends and the write half is
//!   closed; queued messages are then dropped.

use crate::protocol::{encode_frame, VmMessage};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

/// Bytes gathered before a write.
pub const WRITE_BATCH_BYTES: usize = 256 << 10;
/// Largest write buffer kept between writes.
const KEEP_BUFFER_BYTES: usize = 4 << 20;

/// Starts the writer task; returns the channel that feeds it.
pub fn spawn_writer(mut wr: OwnedWriteHalf, peer: String) -> mpsc::UnboundedSender<VmMessage> {
    let (tx, mut rx) = mpsc::unbounded_channel::<VmMessage>();
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(64 << 10);
        while let Some(first) = rx.recv().await {
            buf.clear();
            let mut next = Some(first);
            while let Some(m) = next {
                if let Err(e) = encode_frame(&m, &mut buf) {
                    tracing::error!("cannot encode {} for {peer}: {e}", m.kind());
                }
                next = if buf.len() < WRITE_BATCH_BYTES { rx.try_recv().ok() } else { None };
            }
            if let Err(e) = wr.write_all(&buf).await {
                tracing::debug!("writing to {peer} failed: {e}");
                break;
            }
            if buf.capacity() > KEEP_BUFFER_BYTES {
                // A large message passed: do not keep its buffer for the life of the
                // connection.
                buf = Vec::with_capacity(64 << 10);
            }
        }
        let _ = wr.shutdown().await;
    });
    tx
}

/// Aborts a tokio task when dropped (a connection's reader or accept loop dies with its
/// owner).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
