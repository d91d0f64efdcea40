//! # afritalk-bench
//!
//! The Socket.IO load generator AfriTalk ships: it drives a RUNNING server
//! (`afritalk serve`) the way front ends do, over the Socket.IO v4 websocket
//! transport, and prints figures a person can read. `afritalk-bench --help`
//! lists the scenarios:
//!
//! - `latency`: an open-loop sender at a fixed rate (a fixed timetable, never
//!   waiting for earlier sends); every message carries its due time, and the
//!   recipient's receive time minus that due time goes into an HDR histogram
//!   over every delivery (p50, p99, p99.9, max), with sent / acked / received /
//!   lost counts. `--recv-url` puts the recipients on a second node.
//! - `throughput`: the same at a higher rate, judged on whether the rate was
//!   sustained with nothing lost.
//! - `idle`: N idle authenticated sockets; connects per second and the
//!   server's resident memory per socket (`--server-pid`).
//!
//! The tool mints its tokens with the server's root private key (`--root-key`
//! or the server's `--data-dir`) and writes its users to the directory through
//! the REST admin API with a service token. An `https://` `--url` with
//! `--ca-file` measures a server that terminates TLS itself.
//! `docs/benchmarks.md` has the commands and the figures.
//!
//! ## Layout
//! - [`protocol`]: the Engine.IO v4 / Socket.IO v5 packet codec.
//! - [`client`]: a minimal websocket-only Socket.IO client, one task per socket,
//!   over plain TCP or TLS.
//! - [`setup`]: tokens, directory users, and opening a fleet of sockets.
//! - [`traffic`]: the `latency` and `throughput` scenarios.
//! - [`idle`]: the `idle` scenario.
//! - [`stats`], [`sys`]: histograms and progress; rlimits, `/proc`, timers.
//! - [`cli`]: the command line.

pub mod cli;
pub mod client;
pub mod cpu;
pub mod idle;
pub mod protocol;
pub mod setup;
pub mod stats;
pub mod sys;
pub mod traffic;
