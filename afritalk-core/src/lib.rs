//! # afritalk-core
//!
//! The rules of AfriTalk and the use cases that apply them. Pure: no database,
//! no network, no runtime. It acts on the world only through the port traits of
//! [`afritalk_ports`], so the same service runs on the standalone server's
//! adapters, on an embedding service's own adapters, or on mocks in tests.
//!
//! ## Layout
//! - [`rules`]: the domain rules, each in one place —
//!   [`rules::permissions`] (PDG/DG/Employé matrix, reply rule, who administers),
//!   [`rules::edit_window`] (2 minutes), [`rules::presence`] (online/idle/offline),
//!   [`rules::conversation`] (pairs, participants, sides of a message).
//! - [`actor`]: the authenticated caller.
//! - [`service`]: [`MessagingService`], the use cases, over [`Ports`].
//! - [`views`]: what the use cases return.
//!
//! Every use case refuses a tenant whose messaging is switched off (administration
//! but alerts, and directory search, excepted), writes its audit row, and publishes the
//! realtime events of MISSION §4.
//!
//! ## Embedding
//!
//! An AfriGest service builds the service from the adapters it picks (here the
//! in-process ones; a service would plug its own `Directory`, or the Postgres
//! store) and calls the use cases directly:
//!
//! ```
//! use std::sync::Arc;
//!
//! use afritalk_adapter_memory::{
//!     LocalEventBus, LocalPresence, LocalRateLimiter, MemoryStore, SystemClock, UuidV7Ids,
//! };
//! use afritalk_core::{Actor, MessagingService, NewAlert, Ports, SendMessage};
//! use afritalk_ports::{DisplayName, MessageContent, NotificationKind, PageSize, Role, TenantId, UserId};
//!
//! # futures::executor::block_on(async {
//! let store = MemoryStore::new();
//! let clock = Arc::new(SystemClock::new());
//! let service = MessagingService::new(Ports {
//!     messages: Arc::new(store.clone()),
//!     notifications: Arc::new(store.clone()),
//!     audit: Arc::new(store.clone()),
//!     directory: Arc::new(store.clone()),
//!     features: Arc::new(store),
//!     presence: Arc::new(LocalPresence::new()),
//!     events: Arc::new(LocalEventBus::new()),
//!     rate_limiter: Arc::new(LocalRateLimiter::with_defaults(clock.clone())),
//!     clock,
//!     ids: Arc::new(UuidV7Ids::new()),
//! });
//!
//! let acme = TenantId::parse("acme")?;
//! let stock = Actor::service(acme.clone(), UserId::parse("stock-service")?);
//! for (id, name, role) in [("awa", "Awa Diop", Role::Pdg), ("moussa", "Moussa Ba", Role::Employe)] {
//!     service
//!         .upsert_user(&stock, UserId::parse(id)?, DisplayName::parse(name)?, role, true)
//!         .await?;
//! }
//!
//! // The PDG writes to an employee about an order.
//! let awa = Actor::staff(acme.clone(), UserId::parse("awa")?, Role::Pdg);
//! let sent = service
//!     .send(&awa, SendMessage {
//!         to: UserId::parse("moussa")?,
//!         content: MessageContent::parse("Peux-tu vérifier la commande 17 ?")?,
//!         related: Some(afritalk_ports::RelatedEntity::new("order", "17")?),
//!         client_message_id: None,
//!     })
//!     .await?;
//! assert_eq!(sent.message.seq, 1);
//!
//! // The employee sees one unread message, and may reply to the PDG.
//! let moussa = Actor::staff(acme.clone(), UserId::parse("moussa")?, Role::Employe);
//! let page = service.conversations(&moussa, None, PageSize::DEFAULT).await?;
//! assert_eq!(page.conversations[0].unread_count, 1);
//! service.mark_read(&moussa, sent.message.id).await?;
//!
//! // Another service raises an alert for the employee.
//! let alert = NewAlert::new(moussa.user.clone(), NotificationKind::Alert, "Stock bas", "P-9 sous le seuil", None)?;
//! service.create_notification(&stock, alert).await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

pub mod actor;
pub mod rules;
pub mod service;
pub mod views;

pub use actor::{Actor, ActorKind};
pub use service::{
    AUDIT_RETENTION, AuditPurge, DirectorySearch, NewAlert, audit_kept_since, start_of_utc_day,
};
pub use service::{MessagingService, Ports};
pub use views::*;
