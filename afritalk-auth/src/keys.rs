//! Root keys (Ed25519): the private key signs tokens, the public key verifies them.
//! Both are stored as hex; writing the private key with safe file permissions is
//! the caller's job.

use std::fmt;

use biscuit_auth::{Algorithm, KeyPair, PrivateKey, PublicKey};

pub use crate::error::KeyError;

/// Removes surrounding whitespace (a trailing newline in a key file) and the
/// optional `ed25519/` prefix of biscuit's display form.
fn clean(hex: &str) -> &str {
    let hex = hex.trim();
    hex.strip_prefix("ed25519/")
        .or_else(|| hex.strip_prefix("ed25519-private/"))
        .unwrap_or(hex)
}

/// The root key pair. Its `Debug` shows only the public half.
pub struct RootKeyPair(KeyPair);

impl RootKeyPair {
    /// A fresh random key pair.
    pub fn generate() -> Self {
        Self(KeyPair::new())
    }

    /// Reads a key pair from the hex of its private key.
    pub fn from_hex(private_hex: &str) -> Result<Self, KeyError> {
        let private = PrivateKey::from_bytes_hex(clean(private_hex), Algorithm::Ed25519)
            .map_err(|e| KeyError(e.to_string()))?;
        Ok(Self(KeyPair::from(&private)))
    }

    /// The private key as hex (a secret: store it with 0600 permissions).
    pub fn to_hex(&self) -> String {
        self.0.private().to_bytes_hex()
    }

    /// The public half, the only key a server needs.
    pub fn public(&self) -> RootPublicKey {
        RootPublicKey(self.0.public())
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.0
    }
}

impl fmt::Debug for RootKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootKeyPair")
            .field("public", &self.public().to_hex())
            .finish_non_exhaustive()
    }
}

/// The root public key: verifies tokens, cannot mint them.
#[derive(Clone, Copy, PartialEq)]
pub struct RootPublicKey(PublicKey);

impl RootPublicKey {
    /// Reads a public key from hex (an `ed25519/` prefix is accepted).
    pub fn from_hex(hex: &str) -> Result<Self, KeyError> {
        PublicKey::from_bytes_hex(clean(hex), Algorithm::Ed25519)
            .map(Self)
            .map_err(|e| KeyError(e.to_string()))
    }

    /// The key as hex.
    pub fn to_hex(&self) -> String {
        self.0.to_bytes_hex()
    }

    pub(crate) fn key(&self) -> PublicKey {
        self.0
    }
}

impl fmt::Debug for RootPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootPublicKey({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_hex() {
        let pair = RootKeyPair::generate();
        let again = RootKeyPair::from_hex(&format!("{}\n", pair.to_hex())).unwrap();
        assert_eq!(again.public(), pair.public());
        let public = RootPublicKey::from_hex(&pair.public().to_hex()).unwrap();
        assert_eq!(public, pair.public());
        let prefixed = RootPublicKey::from_hex(&format!("ed25519/{}", public.to_hex())).unwrap();
        assert_eq!(prefixed, public);
    }

    #[test]
    fn bad_hex_is_refused_and_secrets_do_not_print() {
        assert!(RootKeyPair::from_hex("zz").is_err());
        assert!(RootPublicKey::from_hex("abcd").is_err());
        let pair = RootKeyPair::generate();
        assert!(!format!("{pair:?}").contains(&pair.to_hex()));
    }
}
