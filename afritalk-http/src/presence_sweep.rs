//! The presence sweep: time alone changes presence (a quiet minute turns online
//! into idle; ten minutes after the last disconnect, idle becomes offline) and no
//! request marks the moment, so each node periodically asks the core to publish
//! those changes for the users it serves: those with a socket here now, and those
//! who had one until they are offline.

use std::collections::HashMap;

use afritalk_ports::{PresenceStatus, TenantId, UserId};

use crate::app::App;

/// Runs until the task is aborted (at shutdown).
pub(crate) async fn run(app: App) {
    let mut tracked: HashMap<TenantId, HashMap<UserId, PresenceStatus>> = HashMap::new();
    let mut tick = tokio::time::interval(app.inner.config.presence_sweep_interval);
    // The first tick is immediate; nothing has aged yet.
    tick.tick().await;
    loop {
        tick.tick().await;
        for (tenant, user, _) in app.live_connections() {
            // A user connected since the last sweep was announced online at connect.
            tracked
                .entry(tenant)
                .or_default()
                .entry(user)
                .or_insert(PresenceStatus::Online);
        }
        let mut next = HashMap::with_capacity(tracked.len());
        for (tenant, watched) in tracked {
            match app.inner.service.sweep_presence(&tenant, &watched).await {
                Ok(now) => {
                    let still: HashMap<_, _> = now
                        .into_iter()
                        .filter(|(_, status)| *status != PresenceStatus::Offline)
                        .collect();
                    if !still.is_empty() {
                        next.insert(tenant, still);
                    }
                }
                Err(err) => {
                    tracing::warn!(%tenant, %err, "presence sweep failed; retrying next tick");
                    next.insert(tenant, watched);
                }
            }
        }
        tracked = next;
    }
}
