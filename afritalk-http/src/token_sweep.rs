//! The token sweep: a socket's token is authorized again on every event the
//! socket sends, but a socket that only listens sends none and would go on
//! receiving messages after its token expired. So each node periodically
//! re-checks the tokens of its sockets and closes those that may no longer
//! read (expired, or an attenuation whose time ran out). No signature work,
//! and mostly a kept decision rather than the authorizer; the work yields often, so a node with many
//! sockets keeps serving events during a sweep.
//!
//! A token also outlives its user's deactivation, which every use case then
//! refuses but which a listening socket would never hear of: the sweep asks
//! the directory, in list reads of at most 500 users each, per tenant, which
//! of the users of its sockets were deactivated, and closes their sockets
//! too. The sweep also tells sockets
//! that missed events while their buffer was full, and got no event since, to
//! catch up (see `socket/sink.rs`).

use std::collections::{HashMap, HashSet};

use afritalk_auth::Operation;
use afritalk_core::ActorKind;
use afritalk_ports::{TenantId, UserId};

use crate::app::App;
use crate::socket::{Session, sink};

/// Sockets checked between two yields to the runtime.
const CHECKS_PER_YIELD: usize = 64;

/// Staff users, by tenant.
type UsersByTenant = HashMap<TenantId, HashSet<UserId>>;

/// Runs until the task is aborted (at shutdown).
pub(crate) async fn run(app: App) {
    let mut tick = tokio::time::interval(app.inner.config.token_recheck_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; every socket was just checked at connect.
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(root) = app.sockets_root() else {
            continue;
        };
        let sockets = root.sockets();
        let mut staff = UsersByTenant::new();
        for (checked, socket) in sockets.iter().enumerate() {
            if checked % CHECKS_PER_YIELD == CHECKS_PER_YIELD - 1 {
                tokio::task::yield_now().await;
            }
            let Some(session) = socket.extensions.get::<Session>() else {
                continue;
            };
            sink::tell_if_missed(socket);
            if let Err(err) = session
                .token
                .permits(&session.actor.tenant, Operation::Read)
            {
                tracing::info!(%err, user = %session.actor.user, "closing a socket whose token no longer reads");
                crate::socket::close(socket.clone());
            } else if matches!(session.actor.kind, ActorKind::Staff(_)) {
                let Session { actor, .. } = session;
                staff.entry(actor.tenant).or_default().insert(actor.user);
            }
        }
        close_deactivated(&app, staff).await;
    }
}

/// Closes the sockets of those of `staff` whom an administrator deactivated,
/// the way the directory route does when the change is made on this node. A
/// directory that cannot be read closes nothing: the next sweep tries again.
async fn close_deactivated(app: &App, staff: UsersByTenant) {
    for (tenant, users) in staff {
        let users: Vec<UserId> = users.into_iter().collect();
        match app.inner.service.deactivated_among(&tenant, &users).await {
            Ok(found) => {
                for user in found {
                    app.close_sockets_of(&tenant, &user);
                }
            }
            Err(err) => tracing::warn!(%err, %tenant, "deactivated users not checked"),
        }
    }
}
