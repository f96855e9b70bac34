//! Sending a user what they have not acknowledged, when their session
//! starts or moves to a new connection.
//!
//! The stored mailbox is read a page at a time and sent ahead of the
//! client's acknowledgements by at most a window of messages, so memory
//! stays bounded whatever the mailbox holds, and it runs as a task of its
//! own: the connection's reader goes on reading acknowledgements and
//! keepalives meanwhile, and the session stays alive while its client
//! reads. While it runs, live direct messages are left to it (see
//! [`crate::hub::Session::push_direct`]), so each message arrives once and
//! in order. Then the broadcasts that were pending when the session
//! attached follow, paced by the connection's outbox.

use std::sync::Arc;

use bytes::Bytes;
use proto::{ErrorCode, Packet};

use crate::context::Context;
use crate::hub::Session;
use crate::outbox::{encode, Outbox};

/// Cancels the redelivery when its connection ends: dropped with it. A
/// token rather than the task's handle, which would keep the finished
/// task's memory for as long as the connection lasts (1.6 KB per idle
/// session).
#[derive(Debug)]
pub(crate) struct Running(#[allow(dead_code)] tokio_util::sync::DropGuard);

/// Starts redelivering to `out`, the connection `session` has just moved
/// to. `broadcasts` are the broadcasts pending at that moment.
pub(crate) fn start(
    ctx: Arc<Context>,
    session: Arc<Session>,
    out: Outbox,
    broadcasts: Vec<Bytes>,
) -> Running {
    let stop = tokio_util::sync::CancellationToken::new();
    let cancelled = stop.clone();
    tokio::spawn(async move {
        let work = async {
            if let Err(e) = mailbox(&ctx, &session, &out).await {
                tracing::error!(error = %e, user = session.user, "could not read the mailbox");
                // Live delivery resumes; what is stored waits for the next sign-in.
                session.state().redelivery.running = false;
            }
            for bytes in broadcasts {
                if !paced_send(&ctx, &out, bytes).await {
                    return;
                }
            }
        };
        tokio::select! {
            _ = cancelled.cancelled() => {}
            _ = work => {}
        }
    });
    Running(stop.drop_guard())
}

/// Waits until the outbox has room for `bytes`, then queues it; false when
/// the connection is closing (or was cut off for not reading meanwhile).
async fn paced_send(ctx: &Context, out: &Outbox, bytes: Bytes) -> bool {
    let wait = ctx.config.write_timeout();
    if tokio::time::timeout(wait, out.room_for(bytes.len()))
        .await
        .is_err()
    {
        out.close(
            ErrorCode::SlowReader,
            format!("nothing was read for {:.1} s", wait.as_secs_f64()),
        );
        return false;
    }
    out.send(bytes)
}

async fn mailbox(
    ctx: &Context,
    session: &Session,
    out: &Outbox,
) -> Result<(), crate::store::StoreError> {
    let window = ctx.config.redelivery_window.max(1);
    let page = window.div_ceil(2);
    let mut after = 0;
    loop {
        // Wait until half the window has been acknowledged.
        loop {
            let acked = session.acked.notified();
            if session.state().redelivery.in_flight.len() + page <= window {
                break;
            }
            acked.await;
        }
        let queued = ctx.store.queued_page(session.user, after, page).await?;
        tracing::debug!(
            user = session.user,
            after,
            found = queued.len(),
            "mailbox page"
        );
        if queued.is_empty() {
            let mut st = session.state();
            if std::mem::take(&mut st.redelivery.missed) {
                continue;
            }
            st.redelivery.running = false;
            return Ok(());
        }
        for q in queued {
            after = q.delivery;
            let packet = Packet::IncomingMessage {
                from: q.from,
                message: q.delivery,
                body: q.body,
            };
            let Some(bytes) = encode(&packet) else {
                continue;
            };
            session.state().redelivery.in_flight.push_back(q.delivery);
            if !paced_send(ctx, out, bytes).await {
                return Ok(());
            }
        }
    }
}
