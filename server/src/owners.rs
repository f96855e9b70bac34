//! Keeps the cluster's `owners` rows that name this node and this node's
//! hub in agreement (PostgreSQL only), every third of the lease.
//!
//! The rows are written as sessions start, move, go away and end. A write
//! that failed (PostgreSQL away for a moment) or a release request from
//! another node that never came (NATS away, or slower than the 2 s the
//! other node waits) would otherwise leave a name held by nobody, or a
//! session on a connection here that another node has taken over. So:
//! - a session in the hub whose row no longer names it here was taken
//!   over elsewhere: it ends here with SESSION_MOVED, as a release would
//!   have ended it, once two passes in a row found it so (a release on its
//!   way goes first, and hands over what the session was owed);
//! - a row naming another session of the same user here (a sign-in here
//!   took it, and the hub kept the session it had) goes back to the hub's
//!   session ([`give_back`]);
//! - a row naming a session the hub no longer has is deleted (the session
//!   ended here and its row stayed), and a row saying "on a connection"
//!   for a session whose client went away is marked away.
//!
//! Only rows unchanged for [`SETTLE`] are corrected, so a sign-in or a
//! move in progress (its row is written before the hub has the session)
//! is never taken for a stale row.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::nats::MOVED;
use crate::context::Context;
use crate::observe::names;

/// How long a row must have been left alone before it is corrected.
const SETTLE: Duration = Duration::from_secs(5);

/// Checks every `every` until `shutdown`.
pub(crate) async fn keep_in_step(ctx: Arc<Context>, every: Duration, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut suspects = HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        if ctx.serving() {
            suspects = check(&ctx, &suspects).await;
        }
    }
}

/// The hub refused a session of `user` because another one is on a
/// connection here, after the name's row in the cluster was taken for the
/// refused one (a sign-in or resume racing it): the row goes back to the
/// session the hub has.
pub(crate) async fn give_back(ctx: &Context, user: u64) {
    if !ctx.store.is_shared() {
        return;
    }
    let Some(holder) = ctx.hub.of_user(user) else {
        return;
    };
    match ctx.store.give_back_name(user, holder.id, ctx.node()).await {
        Ok(Some(epoch)) => holder
            .epoch
            .store(epoch, std::sync::atomic::Ordering::Release),
        // Another node has it by now: the next passes end ours.
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, user, "the name's row was not given back"),
    }
}

/// One pass; see the module's description. `suspects`: the sessions the
/// last pass found not named here; returns this pass's.
async fn check(ctx: &Arc<Context>, suspects: &HashSet<u64>) -> HashSet<u64> {
    // The hub first: a session there had its row written before it got
    // there, so the read below sees that row unless it moved since.
    let sessions = ctx.hub.all();
    let rows = match ctx.store.rows_held(ctx.node(), SETTLE).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the names held here; next time");
            return suspects.clone();
        }
    };
    let by_session: HashMap<u64, _> = rows.iter().map(|r| (r.session, r)).collect();
    let by_user: HashMap<u64, _> = rows.iter().map(|r| (r.user, r)).collect();
    let mut next = HashSet::new();
    let mut given_back = HashSet::new();
    for session in sessions {
        if by_session.contains_key(&session.id) {
            continue;
        }
        if let Some(row) = by_user.get(&session.user) {
            if row.settled {
                tracing::info!(
                    user = session.user,
                    session = session.id,
                    "a name's row given back"
                );
                metrics::counter!(names::OWNER_REPAIRS, "kind" => "given_back").increment(1);
                give_back(ctx, session.user).await;
                given_back.insert(session.user);
            }
            continue;
        }
        if !suspects.contains(&session.id) {
            next.insert(session.id);
            continue;
        }
        if let Some(s) = ctx.hub.remove(session.id) {
            tracing::warn!(
                session = s.id,
                user = s.user,
                "session taken over elsewhere without telling this node; ending it here"
            );
            metrics::counter!(names::OWNER_REPAIRS, "kind" => "moved").increment(1);
            ctx.end_session(&s, proto::ErrorCode::SessionMoved, MOVED.into());
        }
    }
    // A row just given back is the hub's session's now, whatever it said.
    for row in rows
        .iter()
        .filter(|r| r.settled && !given_back.contains(&r.user))
    {
        let fixed = match ctx.hub.get(row.session) {
            None => ctx
                .store
                .session_ended(row.user, row.session, ctx.node())
                .await
                .map(|()| "freed"),
            Some(s) if row.attached && !s.is_attached() => ctx
                .store
                .session_detached(row.user, row.session, ctx.node(), row.epoch)
                .await
                .map(|()| "away"),
            Some(_) => continue,
        };
        match fixed {
            Ok(kind) => {
                tracing::info!(
                    user = row.user,
                    session = row.session,
                    kind,
                    "a name's row corrected"
                );
                metrics::counter!(names::OWNER_REPAIRS, "kind" => kind).increment(1);
            }
            Err(e) => tracing::debug!(error = %e, "cannot correct a name's row; next time"),
        }
    }
    next
}
