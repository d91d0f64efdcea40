//! The presence sweep: time alone changes presence (a quiet minute turns online
//! into idle; ten minutes after the last disconnect, idle becomes offline) and no
//! request marks the moment, so each node periodically asks the core to publish
//! those changes for the users it serves: those with a socket here now, and
//! those whose presence it changed otherwise (a last socket closed here, a send
//! over REST), until they are offline.
//!
//! Each tenant's users are swept over contiguous windows (from the previous
//! sweep to now), and the core publishes only a threshold crossed inside the
//! window, so a change announced by its own use case is never repeated.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use afritalk_core::rules::presence::SWEEP_INTERVAL_MAX;

use afritalk_ports::{TenantId, UserId};
use chrono::{DateTime, Utc};

use crate::app::App;

/// The users of one tenant this node sweeps, and where their last window ended.
#[derive(Default)]
struct Followed {
    since: Option<DateTime<Utc>>,
    users: HashSet<UserId>,
}

/// Runs until the task is aborted (at shutdown).
pub(crate) async fn run(app: App) {
    let mut followed: HashMap<TenantId, Followed> = HashMap::new();
    // Presence changes of the facts rely on a sweep having run this recently.
    let longest = SWEEP_INTERVAL_MAX
        .to_std()
        .unwrap_or(Duration::from_secs(30));
    let every = app.inner.config.presence_sweep_interval.min(longest);
    let mut tick = tokio::time::interval(every);
    // The first tick is immediate; nothing has aged yet.
    tick.tick().await;
    loop {
        tick.tick().await;
        let live = app
            .live_connections()
            .into_iter()
            .map(|(tenant, user, _)| (tenant, user));
        for (tenant, user) in live.chain(app.take_presence_followups()) {
            followed.entry(tenant).or_default().users.insert(user);
        }
        // Recorded before any wait: shutdown aborts the sweep wherever it
        // is, and the users taken in must still be handed over.
        record(&app, &followed);
        let mut next = HashMap::with_capacity(followed.len());
        for (tenant, f) in followed {
            let users: Vec<UserId> = f.users.iter().cloned().collect();
            let service = &app.inner.service;
            match service.sweep_presence(&tenant, &users, f.since).await {
                Ok(swept) if swept.still_changing.is_empty() => {}
                Ok(swept) => {
                    let users = swept.still_changing.into_iter().collect();
                    let since = Some(swept.swept_to);
                    next.insert(tenant, Followed { since, users });
                }
                Err(err) => {
                    // The window grows until the next sweep that succeeds.
                    tracing::warn!(%tenant, %err, "presence sweep failed; retrying next tick");
                    next.insert(tenant, f);
                }
            }
        }
        followed = next;
        record(&app, &followed);
    }
}

/// Keeps the users followed where a stopping node finds them to hand over.
fn record(app: &App, followed: &HashMap<TenantId, Followed>) {
    let users = followed
        .iter()
        .flat_map(|(tenant, f)| f.users.iter().map(|u| (tenant.clone(), u.clone())))
        .collect();
    *app.inner
        .presence_swept
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = users;
}
