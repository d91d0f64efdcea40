//! Signing new tokens with the root private key (development tokens, services).

use std::time::{Duration, SystemTime};

use afritalk_core::ActorKind;
use biscuit_auth::macros::{biscuit, fact};

use crate::error::MintError;
use crate::identity::Identity;
use crate::keys::RootKeyPair;

/// Mints tokens in the format of the [crate docs](crate).
#[derive(Debug)]
pub struct TokenMinter {
    root: RootKeyPair,
}

impl TokenMinter {
    /// A minter signing with `root`.
    pub fn new(root: RootKeyPair) -> Self {
        Self { root }
    }

    /// The root key pair (its public half configures verifiers).
    pub fn root(&self) -> &RootKeyPair {
        &self.root
    }

    /// A token for `identity` that expires `ttl` from now, as base64.
    pub fn mint(&self, identity: &Identity, ttl: Duration) -> Result<String, MintError> {
        let expires = SystemTime::now()
            .checked_add(ttl)
            .ok_or(MintError::TtlOverflow)?;
        self.mint_until(identity, expires)
    }

    /// A token for `identity` that expires at `expires` (second precision).
    pub fn mint_until(
        &self,
        identity: &Identity,
        expires: SystemTime,
    ) -> Result<String, MintError> {
        let build = |e: biscuit_auth::error::Token| MintError::Build(e.to_string());
        let mut builder = biscuit!(
            r#"
            tenant({tenant});
            user({user});
            check if time($t), $t <= {expires};
            "#,
            tenant = identity.tenant.as_str(),
            user = identity.user.as_str(),
            expires = expires,
        );
        builder = match identity.kind {
            ActorKind::Staff(role) => builder.fact(fact!("role({role})", role = role.as_str())),
            ActorKind::Service => builder.fact(fact!("service(true)")),
        }
        .map_err(build)?;
        if let Some(name) = &identity.name {
            builder = builder
                .fact(fact!("name({name})", name = name.as_str()))
                .map_err(build)?;
        }
        builder
            .build(self.root.key_pair())
            .and_then(|token| token.to_base64())
            .map_err(build)
    }
}
