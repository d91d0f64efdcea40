//! # afritalk-adapter-memory
//!
//! The in-process adapters of AfriTalk's embedded default, implementing the
//! [`afritalk_ports`] traits with nothing but the standard library's locks: no
//! server, no async runtime. Presence, the event bus and the rate limiter serve
//! a single-node deployment; [`MemoryStore`] gives embedding services' tests and
//! doc examples a complete storage backend that forgets everything on drop.
//!
//! ## Layout
//! - [`clock`]: the real UTC clock at microsecond precision ([`SystemClock`]).
//! - [`cache`]: short-lived read-through caches of the tenant flag and directory
//!   entries, read on every message ([`CachedFeatureFlags`], [`CachedDirectory`]).
//! - [`ids`]: time-ordered UUID v7 identifiers ([`UuidV7Ids`]).
//! - [`presence`]: live connections and last activity per user ([`LocalPresence`]).
//! - [`bus`]: hands published events to the node's attached
//!   [`EventSink`](afritalk_ports::EventSink) ([`LocalEventBus`]).
//! - [`rate_limit`]: a sliding window per tenant, user and action
//!   ([`LocalRateLimiter`], configured by [`RateLimits`](afritalk_ports::RateLimits)).
//! - [`store`]: messages, conversations, notifications, audit log, directory and
//!   feature flags behind one mutex ([`MemoryStore`]).
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//!
//! use afritalk_adapter_memory::{LocalRateLimiter, MemoryStore, SystemClock};
//! use afritalk_ports::{
//!     Clock, FeatureFlags, MessageStore, RateAction, RateDecision, RateLimiter, TenantId, UserId,
//! };
//!
//! # futures::executor::block_on(async {
//! let store = MemoryStore::new();
//! // One store serves as every storage port; clones share the data.
//! let messages: Arc<dyn MessageStore> = Arc::new(store.clone());
//! let flags: Arc<dyn FeatureFlags> = Arc::new(store);
//! let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
//! let limiter = LocalRateLimiter::with_defaults(clock);
//!
//! let acme = TenantId::parse("acme")?;
//! assert!(flags.messaging_enabled(&acme).await?);
//! let awa = UserId::parse("awa")?;
//! assert_eq!(limiter.check(&acme, &awa, RateAction::Send).await?, RateDecision::Allowed);
//! # let _ = messages;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! Every lock is recovered rather than unwrapped when poisoned: each operation
//! validates before it mutates, so a panicking thread cannot leave half a write.

pub mod bus;
pub mod cache;
pub mod clock;
pub mod ids;
pub mod presence;
pub mod rate_limit;
pub mod store;

pub use bus::LocalEventBus;
pub use cache::{CachedDirectory, CachedFeatureFlags};
pub use clock::SystemClock;
pub use ids::UuidV7Ids;
pub use presence::LocalPresence;
pub use rate_limit::LocalRateLimiter;
pub use store::MemoryStore;
