//! The token sweep: a socket's token is authorized again on every event the
//! socket sends, but a socket that only listens sends none and would go on
//! receiving messages after its token expired. So each node periodically
//! re-checks the tokens of its sockets and closes those that may no longer
//! read (expired, or an attenuation whose time ran out). No signature work,
//! and mostly a kept decision rather than the authorizer; the work yields often, so a node with many
//! sockets keeps serving events during a sweep. The sweep also tells sockets
//! that missed events while their buffer was full, and got no event since, to
//! catch up (see `socket/sink.rs`).

use afritalk_auth::Operation;

use crate::app::App;
use crate::socket::{Session, sink};

/// Sockets checked between two yields to the runtime.
const CHECKS_PER_YIELD: usize = 64;

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
        for (checked, socket) in root.sockets().into_iter().enumerate() {
            if checked % CHECKS_PER_YIELD == CHECKS_PER_YIELD - 1 {
                tokio::task::yield_now().await;
            }
            let Some(session) = socket.extensions.get::<Session>() else {
                continue;
            };
            sink::tell_if_missed(&socket);
            if let Err(err) = session
                .token
                .permits(&session.actor.tenant, Operation::Read)
            {
                tracing::info!(%err, user = %session.actor.user, "closing a socket whose token no longer reads");
                if let Err(err) = socket.disconnect() {
                    tracing::debug!(%err, "socket already gone");
                }
            }
        }
    }
}
