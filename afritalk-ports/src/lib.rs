//! # afritalk-ports
//!
//! The vocabulary of AfriTalk and its contract with the outside world. The core
//! ([`afritalk-core`]) speaks only these types; adapters (Postgres, SQLite,
//! Redis, in-process) implement these traits; the HTTP edge converts JSON to and
//! from them. This crate depends on nothing of ours.
//!
//! ## Layout
//! - [`ids`]: identifier newtypes (`TenantId`, `UserId`, `MessageId`…).
//! - [`values`]: validated values (`MessageContent`, `RelatedEntity`, `Role`…);
//!   an invalid one cannot be constructed.
//! - [`entities`]: stored things and what clients see (`Message`, `Conversation`,
//!   `Notification`, `AuditEntry`, `DirectoryUser`, presence).
//! - [`search`]: directory search: the folded name key, the search text and
//!   the query a `Directory` answers.
//! - [`events`]: realtime events and their audiences.
//! - [`error`]: `ValidationError`, `StoreError` (adapters), `MessagingError` (use cases).
//! - [`ports`]: the driven-port traits, each method stating its obligations.
//!   With the `mock` feature, every trait has a mockall `Mock…` twin.
//!
//! [`afritalk-core`]: https://docs.rs/afritalk-core

pub mod entities;
pub mod error;
pub mod events;
pub mod ids;
pub mod ports;
pub mod search;
pub mod values;

pub use entities::*;
pub use error::*;
pub use events::*;
pub use ids::*;
pub use ports::*;
pub use search::*;
pub use values::*;
