//! # afritalk-auth
//!
//! AfriTalk's biscuit tokens: the root key pair, minting (development tokens and
//! services that hold the private key), and verification with the root PUBLIC key
//! only (what a server holds).
//!
//! ## Layout
//! - [`keys`]: [`RootKeyPair`] and [`RootPublicKey`], generated or read from hex.
//! - [`identity`]: [`Identity`], who a token speaks for, convertible to an
//!   [`afritalk_core::Actor`]; [`Operation`], what a request wants to do.
//! - [`mint`]: [`TokenMinter`], signs new tokens.
//! - [`verify`]: [`TokenVerifier`], checks a token for a tenant and an operation,
//!   either at once or as [`open`](TokenVerifier::open) (signatures, once) then
//!   [`VerifiedToken`] authorized as often as needed (a socket per event).
//!   The tokens it opened are kept (bounded), so a token sent again skips the
//!   signature work. Every use is authorized for its time, tenant and
//!   operation; an allowing decision is reused while the token's dates
//!   cannot change it, so a socket's events do not each run the authorizer.
//! - [`error`]: [`AuthError`] (verification) and [`MintError`], each with a stable code.
//!
//! ## Token format
//! A token is a biscuit (v3 format, Ed25519 root key) in URL-safe base64. Its
//! authority block, signed by the root key, carries exactly:
//! ```datalog
//! tenant("acme");                 // the tenant every action is confined to
//! user("u-42");                   // the user id (or the service's name)
//! role("PDG");                    // staff: "PDG", "DG" or "EMPLOYE" ...
//! service(true);                  // ... or, instead of role, a service token
//! name("Awa Diop");               // optional display name (refreshes the directory)
//! check if time($t), $t <= 2026-01-01T00:00:00Z;   // expiry
//! ```
//! Anyone holding a token may append attenuation blocks without the private key,
//! e.g. `check if operation("read");` for a read-only token. The verifier's
//! authorizer provides `time(now)` and `operation("read" | "write")` to those checks,
//! and allows only `if tenant(<requested tenant>), user($u)`: the requested tenant is
//! stated in the policy, not as a fact, because an authorizer fact `tenant(..)` would
//! itself satisfy the identity check. Identity is read from the authority block
//! only: facts in appended blocks (a forged `user("admin")`) are never seen.

mod decisions;
pub mod error;
pub mod identity;
pub mod keys;
pub mod mint;
mod opened;
pub mod verify;

pub use error::{AuthError, MintError};
pub use identity::{Identity, Operation};
pub use keys::{RootKeyPair, RootPublicKey};
pub use mint::TokenMinter;
pub use verify::{MAX_TOKEN_BLOCKS, MAX_TOKEN_LEN, TokenVerifier, VerifiedToken};
