//! The coordinator's TCP server: accepts connections, authenticates them, and turns the
//! frames of each authenticated connection into [`Event`]s for the core.
//!
//! The invariants are those of the [parent module](super).

use super::core::{Event, Responder};
use super::gate::{HandshakeGate, Ticket};
use super::validate_image;
use crate::auth::{server_handshake, ClusterToken};
use crate::connection::spawn_writer;
use crate::protocol::{read_message, Role, VmCapabilities, VmMessage};
use crate::Error;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// State the connection tasks share.
pub(super) struct ServerCtx {
    pub(super) token: ClusterToken,
    pub(super) core: mpsc::UnboundedSender<Event>,
    pub(super) handshake_timeout: Duration,
    pub(super) gate: Arc<HandshakeGate>,
    pub(super) next_conn: AtomicU64,
}

pub(super) async fn accept_loop(listener: TcpListener, ctx: Arc<ServerCtx>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let ticket = ctx.gate.admit(peer.ip());
                let id = ticket.id();
                let task = tokio::spawn(serve(stream, peer, ctx.clone(), ticket));
                ctx.gate.set_abort(id, task.abort_handle());
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, ctx: Arc<ServerCtx>, ticket: Ticket) {
    let handshake = async {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? > 0 {
            ticket.spoke();
        }
        server_handshake(&mut stream, &ctx.token).await
    };
    let role = match tokio::time::timeout(ctx.handshake_timeout, handshake).await {
        Err(_) => {
            tracing::warn!("{peer}: handshake timed out; closed");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!("{peer}: refused: {e}");
            return;
        }
        Ok(Ok(role)) => role,
    };
    drop(ticket);
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let out = spawn_writer(wr, peer.to_string());
    let conn = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
    let r = match role {
        Role::Worker => serve_worker(rd, out, peer, conn, &ctx).await,
        Role::Client => serve_client(rd, out, peer, &ctx).await,
    };
    match r {
        Ok(()) | Err(Error::Closed) => tracing::debug!("{peer}: connection closed"),
        Err(e) => tracing::error!("{peer}: connection closed: {e}"),
    }
}

async fn serve_worker(
    mut rd: OwnedReadHalf,
    out: mpsc::UnboundedSender<VmMessage>,
    peer: SocketAddr,
    conn: u64,
    ctx: &ServerCtx,
) -> Result<(), Error> {
    let first = tokio::time::timeout(
        ctx.handshake_timeout,
        read_message(&mut rd, crate::protocol::MAX_FRAME_BYTES),
    )
    .await
    .map_err(|_| Error::Timeout("registration"))??;
    let VmMessage::Register { node, capabilities, .. } = &first else {
        return Err(Error::Unexpected(first.kind()));
    };
    let node = *node;
    check_capabilities(capabilities)?;
    let _ = ctx.core.send(Event::NodeUp { conn, addr: peer.to_string(), register: first, tx: out });
    let result = loop {
        match read_message::<VmMessage, _>(&mut rd, crate::protocol::MAX_MESSAGE_BYTES).await {
            Ok(
                msg @ (VmMessage::Heartbeat(_)
                | VmMessage::TaskDone { .. }
                | VmMessage::TaskError { .. }
                | VmMessage::NeedImage(_)),
            ) => {
                let _ = ctx.core.send(Event::FromNode { node, conn, msg });
            }
            Ok(other) => break Err(Error::Unexpected(other.kind())),
            Err(e) => break Err(e),
        }
    };
    let _ = ctx.core.send(Event::NodeDown { node, conn });
    result
}

fn check_capabilities(c: &VmCapabilities) -> Result<(), Error> {
    if c.vcpus == 0 || c.max_concurrent == 0 || c.max_concurrent > 1 << 16 {
        return Err(Error::Invalid(format!(
            "capabilities out of range: {} vCPUs, {} slots",
            c.vcpus, c.max_concurrent
        )));
    }
    Ok(())
}

async fn serve_client(
    mut rd: OwnedReadHalf,
    out: mpsc::UnboundedSender<VmMessage>,
    peer: SocketAddr,
    ctx: &ServerCtx,
) -> Result<(), Error> {
    loop {
        let msg = read_message::<VmMessage, _>(&mut rd, crate::protocol::MAX_MESSAGE_BYTES).await?;
        let ev = match msg {
            VmMessage::PutImage { req, bytes } => {
                let (bytes, checked) = tokio::task::spawn_blocking(move || {
                    let r = validate_image(&bytes);
                    (bytes, r)
                })
                .await
                .map_err(|e| Error::Invalid(e.to_string()))?;
                match checked {
                    Ok(hash) => Event::PutImage {
                        hash,
                        bytes: Arc::new(bytes),
                        reply: Responder::Remote { tx: out.clone(), req },
                    },
                    Err(message) => {
                        let _ = out.send(VmMessage::Failure { req, message });
                        continue;
                    }
                }
            }
            VmMessage::Submit { req, task_type, spec } => {
                Event::Submit { task_type, spec, reply: Responder::Remote { tx: out.clone(), req } }
            }
            VmMessage::GetStatus { req, task } => {
                Event::Status { task, reply: Responder::Remote { tx: out.clone(), req } }
            }
            VmMessage::Wait { req, task } => {
                Event::Wait { task, reply: Responder::Remote { tx: out.clone(), req } }
            }
            VmMessage::GetClusterStatus { req } => {
                Event::Cluster { reply: Responder::Remote { tx: out.clone(), req } }
            }
            VmMessage::HasImage { req, hash } => {
                Event::HasImage { hash, reply: Responder::Remote { tx: out.clone(), req } }
            }
            VmMessage::CancelTask { req, task, by } => Event::Cancel {
                task,
                by: format!("{} ({peer})", by.chars().take(200).collect::<String>()),
                reply: Responder::Remote { tx: out.clone(), req },
            },
            other => return Err(Error::Unexpected(other.kind())),
        };
        if ctx.core.send(ev).is_err() {
            return Err(Error::Closed);
        }
    }
}
