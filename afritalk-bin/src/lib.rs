//! # afritalk-bin
//!
//! The `afritalk` binary as a library, so black-box tests can start the real
//! application on a free port (zero2prod's `Application`).
//!
//! ## Layout
//! - [`config`]: typed configuration from the environment, secrets never printed.
//! - [`keys`]: the embedded default's root key pair in the data directory.
//! - [`wiring`]: the one place that names concrete adapters and assembles the service.
//! - [`app`]: [`app::Application`] — build from a config, bind, serve until shutdown.
//! - [`cli`]: the subcommands (`serve`, `migrate`, `token`, `user upsert`, `user list`,
//!   `audit purge`).
//! - [`retention`]: `serve`'s daily purge of audit rows past their retention.

pub mod app;
pub mod cli;
pub mod config;
pub mod keys;
pub mod retention;
pub mod wiring;
