//! # afritalk-contract
//!
//! The storage-port contract of AfriTalk, written once: every behaviour the
//! core relies on from `MessageStore`, `NotificationStore`, `AuditLog`,
//! `Directory` and `FeatureFlags` (the MUST sentences of `afritalk_ports::ports`),
//! as async test cases any adapter runs against itself.
//!
//! An adapter crate runs the whole suite from `tests/contract.rs`:
//!
//! ```ignore
//! async fn fresh() -> afritalk_contract::Fixture {
//!     let store = MyStore::open_somewhere_new().await;
//!     afritalk_contract::Fixture::new(afritalk_contract::Ports::from_store(store))
//!         .with_teardown(async move { /* drop the database */ })
//! }
//! afritalk_contract::storage_contract!(fresh);
//! ```
//!
//! Each case gets its own fresh store (so cases run in parallel), and the
//! teardown runs whether the case passed or panicked.
//!
//! ## Layout
//! - this file: [`Ports`], [`Fixture`], [`run`] and the [`storage_contract!`] macro.
//! - [`fixtures`]: builders of ids, users, messages, notifications and audit rows.
//! - [`cases`]: the test cases, one `pub async fn` each, named as sentences.
//! - [`hot_paths`]: one round of the calls a busy server makes, for the
//!   adapters' statement-cache tests (not part of the contract).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use afritalk_ports::{AuditLog, Directory, FeatureFlags, MessageStore, NotificationStore};
use futures::FutureExt;

pub mod cases;
pub mod fixtures;
pub mod hot_paths;

/// The storage ports under test; one store usually backs all of them.
#[derive(Clone)]
pub struct Ports {
    /// Messages and conversations.
    pub messages: Arc<dyn MessageStore>,
    /// In-app notifications.
    pub notifications: Arc<dyn NotificationStore>,
    /// The audit trail.
    pub audit: Arc<dyn AuditLog>,
    /// The user directory.
    pub directory: Arc<dyn Directory>,
    /// Per-tenant feature flags (the store's default MUST be "enabled").
    pub flags: Arc<dyn FeatureFlags>,
}

impl Ports {
    /// Uses one store for every port.
    pub fn from_store<S>(store: S) -> Self
    where
        S: MessageStore + NotificationStore + AuditLog + Directory + FeatureFlags + Clone + 'static,
    {
        Self {
            messages: Arc::new(store.clone()),
            notifications: Arc::new(store.clone()),
            audit: Arc::new(store.clone()),
            directory: Arc::new(store.clone()),
            flags: Arc::new(store),
        }
    }
}

/// Future run after a case to release what the fixture created.
pub type Teardown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A fresh, empty store for one case, and how to clean it up.
pub struct Fixture {
    /// The ports of the fresh store.
    pub ports: Ports,
    teardown: Option<Teardown>,
}

impl Fixture {
    /// A fixture with nothing to clean up.
    pub fn new(ports: Ports) -> Self {
        Self {
            ports,
            teardown: None,
        }
    }

    /// Adds the clean-up to run after the case (passed or failed).
    pub fn with_teardown(mut self, teardown: impl Future<Output = ()> + Send + 'static) -> Self {
        self.teardown = Some(Box::pin(teardown));
        self
    }
}

/// Runs one case on a fresh fixture, then tears it down, then re-raises the
/// case's panic if it failed.
pub async fn run<F, FF, C, CF>(factory: F, case: C)
where
    F: FnOnce() -> FF,
    FF: Future<Output = Fixture>,
    C: FnOnce(Ports) -> CF,
    CF: Future<Output = ()>,
{
    let fixture = factory().await;
    let outcome = AssertUnwindSafe(case(fixture.ports.clone()))
        .catch_unwind()
        .await;
    drop(fixture.ports);
    if let Some(teardown) = fixture.teardown {
        teardown.await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Expands to one `#[tokio::test]` per contract case, each on a fresh fixture
/// from `$factory` (an `async fn() -> Fixture`). The calling crate needs
/// `tokio` (with `macros` and `rt-multi-thread`) among its dependencies.
#[macro_export]
macro_rules! storage_contract {
    ($factory:path) => {
        $crate::storage_contract!(@cases $factory;
            send_stores_message_conversation_notification_and_audit,
            send_between_the_same_user_is_refused,
            retry_with_same_client_message_id_returns_the_stored_message_and_writes_nothing,
            concurrent_retries_store_exactly_one_message,
            concurrent_sends_get_gapless_unique_seqs,
            concurrent_sends_across_conversations_each_get_their_own_answer,
            concurrent_acks_of_many_messages_each_get_their_own_answer,
            failed_send_leaves_nothing_half_written,
            history_and_catch_up_are_stable_while_messages_arrive,
            conversation_list_orders_latest_first_with_last_message_and_unread_count,
            conversation_partners_follow_the_conversation_list_order,
            unicode_and_emoji_round_trip,
            timestamps_are_utc_to_the_microsecond,
            mark_delivered_keeps_the_first_time,
            mark_delivered_by_a_non_recipient_changes_nothing,
            concurrent_delivery_acks_deliver_exactly_once,
            mark_read_keeps_first_read_at_and_returns_only_newly_read,
            edit_and_delete_follow_their_not_found_and_conflict_rules,
            edit_and_delete_keep_the_message_notification_text_in_step,
            notification_status_only_moves_forward,
            conversation_times_never_go_back,
            message_times_never_go_back,
            changes_since_follows_updated_at_then_id,
            an_alert_and_its_audit_row_are_stored_together_or_not_at_all,
            notifications_list_unread_first_then_newest,
            reading_messages_reads_only_their_unread_notifications,
            mark_all_read_changes_only_the_user_s_unread_notifications,
            audit_query_filters_newest_first_and_purge_removes_only_older_rows,
            a_purge_whose_receipt_id_is_taken_fails_whole,
            concurrent_audit_appends_each_get_their_own_answer,
            directory_upserts_and_reads_users,
            recording_an_identity_never_switches_a_user_back_on,
            directory_search_pages_by_folded_name_and_matches_without_accents,
            feature_flags_default_on_and_switch_per_tenant,
            tenant_isolation_holds_through_every_port_method,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::run($factory, $crate::cases::$case).await;
            }
        )*
    };
}
