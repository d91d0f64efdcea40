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
//! excepted), writes its audit row, and publishes the realtime events of MISSION §4.

pub mod actor;
pub mod rules;
pub mod service;
pub mod views;

pub use actor::{Actor, ActorKind};
pub use service::{AUDIT_RETENTION, NewAlert};
pub use service::{MessagingService, Ports};
pub use views::*;
