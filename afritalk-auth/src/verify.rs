//! Verifying tokens with the root public key only: size caps before parsing, an
//! authorizer that states time, operation and the requested tenant, explicit
//! limits, and identity read from the authority block alone.
//!
//! Verification is split in two so that a long-lived connection pays for the
//! signatures once: [`TokenVerifier::open`] decodes the token and checks its
//! signature chain (the expensive part, Ed25519), and the resulting
//! [`VerifiedToken`] is authorized (time, operation, tenant) as often as
//! needed without any signature work. [`TokenVerifier::verify`] does both.
//! A verifier keeps the tokens it opened (see `opened.rs`), so a token sent
//! again (the next REST call, a reconnect) skips the signature work too. Every
//! use is decided for its own time, tenant and operation, but an allowing
//! decision is reused while the token's dates cannot change it (see
//! `decisions.rs`), so the authorizer runs once per span, not once per event.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use afritalk_core::ActorKind;
use afritalk_ports::{DisplayName, Role, TenantId, UserId};
use biscuit_auth::error::{Format, Logic, Token as TokenError};
use biscuit_auth::macros::{authorizer, rule};
use biscuit_auth::{Authorizer, AuthorizerLimits, Biscuit};

use crate::decisions::Decisions;
use crate::error::AuthError;
use crate::identity::{Identity, Operation};
use crate::keys::RootPublicKey;
use crate::opened::{DEFAULT_CAPACITY, OpenedTokens};

/// Longest token accepted, in base64 characters; checked before any parsing.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Most blocks (authority + attenuations) a token may have.
pub const MAX_TOKEN_BLOCKS: usize = 4;

/// Bounds on datalog evaluation. Facts and iterations are the real bound (our
/// tokens need a handful of facts and one iteration, and size and block count are
/// capped before parsing). The time bound is wall-clock, so it is only a last
/// resort: a tight one (10 ms was tried) refuses valid tokens with 401 whenever
/// the CPU is busy, which is exactly when users retry the most.
const LIMITS: AuthorizerLimits = AuthorizerLimits {
    max_facts: 256,
    max_iterations: 32,
    max_time: Duration::from_secs(1),
};

/// Checks tokens against the root public key. Cheap to clone and share (the
/// clones share the tokens already opened).
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    root: RootPublicKey,
    opened: Arc<OpenedTokens>,
}

impl TokenVerifier {
    /// A verifier trusting tokens signed by `root`'s private half, keeping up
    /// to 4,096 opened tokens (two generations of 2,048).
    pub fn new(root: RootPublicKey) -> Self {
        Self::with_capacity(root, DEFAULT_CAPACITY)
    }

    /// A verifier keeping at most `capacity` opened tokens per generation
    /// (two generations are kept).
    pub fn with_capacity(root: RootPublicKey, capacity: usize) -> Self {
        Self {
            root,
            opened: Arc::new(OpenedTokens::new(capacity)),
        }
    }

    /// How many opens were answered by a token already opened, without
    /// signature work (for metrics and tests).
    pub fn reopened(&self) -> u64 {
        self.opened.hits()
    }

    /// How many opened tokens are kept now.
    pub fn kept(&self) -> usize {
        self.opened.len()
    }

    /// Verifies `token` for an `operation` on `tenant` and returns who it speaks for:
    /// [`open`](Self::open) then [`VerifiedToken::authorize`].
    pub fn verify(
        &self,
        token: &str,
        tenant: &TenantId,
        operation: Operation,
    ) -> Result<Identity, AuthError> {
        self.open(token)?.authorize(tenant, operation)
    }

    /// Decodes `token` and checks its signature chain with the root key, after the
    /// size cap and before the block cap. This says nothing yet about expiry,
    /// tenant or operation: authorize the result for each use.
    pub fn open(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Malformed("empty token".into()));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed(format!(
                "token longer than {MAX_TOKEN_LEN} characters"
            )));
        }
        if let Some(opened) = self.opened.get(token) {
            return Ok(opened);
        }
        let biscuit = Biscuit::from_base64(token, self.root.key()).map_err(parse_error)?;
        if biscuit.block_count() > MAX_TOKEN_BLOCKS {
            return Err(AuthError::Malformed(format!(
                "token has more than {MAX_TOKEN_BLOCKS} blocks"
            )));
        }
        let opened = VerifiedToken {
            inner: Arc::new(Opened {
                decisions: Decisions::for_token(&biscuit),
                biscuit,
            }),
        };
        self.opened.put(token, opened.clone());
        Ok(opened)
    }
}

/// A token whose signatures verified with the root key (see
/// [`TokenVerifier::open`]), ready to be authorized any number of times without
/// signature work. The time is read at each authorization, so a kept token stops
/// being accepted when it expires. An allowing decision is kept for as long as
/// the token's dates say it holds (see `decisions.rs`), so a socket's events do
/// not run the authorizer again and again. Cheap to clone (clones share the
/// kept decisions). Its `Debug` output shows the block count only: the token
/// itself is a bearer credential and never printed.
#[derive(Clone)]
pub struct VerifiedToken {
    inner: Arc<Opened>,
}

/// What opening a token yields: the token, and its authorizer's decisions.
struct Opened {
    biscuit: Biscuit,
    decisions: Decisions,
}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("blocks", &self.inner.biscuit.block_count())
            .finish_non_exhaustive()
    }
}

impl VerifiedToken {
    /// Authorizes an `operation` on `tenant` now and returns who the token speaks
    /// for, with the same checks and errors as [`TokenVerifier::verify`].
    pub fn authorize(
        &self,
        tenant: &TenantId,
        operation: Operation,
    ) -> Result<Identity, AuthError> {
        self.authorize_at(tenant, operation, SystemTime::now())
    }

    /// Whether the token still allows an `operation` on `tenant` now, for
    /// re-checking a token already authorized once: [`authorize`](Self::authorize)
    /// without the identity. A refusal is classified exactly as by
    /// [`authorize`](Self::authorize): expired, wrong tenant, or operation refused.
    pub fn permits(&self, tenant: &TenantId, operation: Operation) -> Result<(), AuthError> {
        let now = SystemTime::now();
        if self
            .inner
            .decisions
            .allows(tenant, operation, unix_seconds(now))
        {
            return Ok(());
        }
        self.authorize_at(tenant, operation, now).map(drop)
    }

    /// [`authorize`](Self::authorize) at the time `at`, to the whole second as
    /// biscuit states it: a kept decision that holds then, or the authorizer.
    fn authorize_at(
        &self,
        tenant: &TenantId,
        operation: Operation,
        at: SystemTime,
    ) -> Result<Identity, AuthError> {
        let now = unix_seconds(at);
        let decisions = &self.inner.decisions;
        if let Some(identity) = decisions.recall(tenant, operation, now) {
            return Ok(identity);
        }
        decisions.count_evaluation();
        let mut authorizer = self.authorizer(tenant, operation, now)?;
        let outcome = authorizer.authorize();
        let claims = Claims::query(&mut authorizer)?;
        let identity = match outcome {
            Ok(_) => claims.into_identity(tenant)?,
            Err(err) => return Err(refusal(err, &claims, tenant)),
        };
        decisions.remember(operation, &identity, now);
        Ok(identity)
    }

    /// The authorizer stating the time `now` (unix seconds), the operation, the
    /// limits, and the one policy: allow if the authority block names `tenant`
    /// and a user. It states no other date and registers no extern function,
    /// which is what lets `decisions.rs` keep an allowing decision until the
    /// token's next date: keep it so.
    fn authorizer(
        &self,
        tenant: &TenantId,
        operation: Operation,
        now: u64,
    ) -> Result<Authorizer, AuthError> {
        authorizer!(
            r#"
            time({now});
            operation({operation});
            allow if tenant({tenant}), user($u);
            "#,
            now = UNIX_EPOCH + Duration::from_secs(now),
            operation = operation.as_str(),
            tenant = tenant.as_str(),
        )
        .set_limits(LIMITS)
        .build(&self.inner.biscuit)
        .map_err(logic_error)
    }
}

/// `at` in whole seconds since the epoch, as biscuit states a time.
fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The error of a failed authorization: a refusal is classified, anything else
/// (limits, bad rules) is malformed.
fn refusal(err: TokenError, claims: &Claims, tenant: &TenantId) -> AuthError {
    match err {
        TokenError::FailedLogic(
            Logic::Unauthorized { checks, .. } | Logic::NoMatchingPolicy { checks },
        ) => classify_refusal(&checks, claims, tenant),
        other => logic_error(other),
    }
}

/// Why an authorizer refused: expiry first, then the tenant, then attenuation checks.
fn classify_refusal(
    checks: &[biscuit_auth::error::FailedCheck],
    claims: &Claims,
    tenant: &TenantId,
) -> AuthError {
    let rule = |c: &biscuit_auth::error::FailedCheck| match c {
        biscuit_auth::error::FailedCheck::Block(b) => b.rule.clone(),
        biscuit_auth::error::FailedCheck::Authorizer(a) => a.rule.clone(),
    };
    if checks.iter().any(|c| rule(c).contains("time(")) {
        AuthError::Expired
    } else if claims.tenants.iter().any(|t| t != tenant.as_str()) {
        AuthError::WrongTenant
    } else if !checks.is_empty() {
        AuthError::OperationRefused
    } else {
        AuthError::Malformed("the token states no tenant or user".into())
    }
}

/// Errors met while decoding: a signature problem or anything else malformed.
fn parse_error(err: TokenError) -> AuthError {
    match err {
        TokenError::Format(
            Format::Signature(_)
            | Format::InvalidSignatureSize(_)
            | Format::SealedSignature
            | Format::UnknownPublicKey
            | Format::UnknownExternalKey,
        ) => AuthError::BadSignature,
        other => AuthError::Malformed(other.to_string()),
    }
}

/// Errors of the datalog evaluation that are not a refusal (limits, bad rules).
fn logic_error(err: TokenError) -> AuthError {
    AuthError::Malformed(err.to_string())
}

/// The identity facts of the authority block. The authorizer's default query
/// scope is the authority block plus the authorizer itself (which states none of
/// these), so facts of appended blocks never appear here.
struct Claims {
    tenants: Vec<String>,
    users: Vec<String>,
    roles: Vec<String>,
    services: Vec<bool>,
    names: Vec<String>,
}

impl Claims {
    fn query(authorizer: &mut Authorizer) -> Result<Self, AuthError> {
        let one = |rows: Vec<(String,)>| rows.into_iter().map(|(v,)| v).collect::<Vec<_>>();
        let tenants = authorizer
            .query(rule!("q($t) <- tenant($t)"))
            .map_err(logic_error)?;
        let users = authorizer
            .query(rule!("q($u) <- user($u)"))
            .map_err(logic_error)?;
        let roles = authorizer
            .query(rule!("q($r) <- role($r)"))
            .map_err(logic_error)?;
        let names = authorizer
            .query(rule!("q($n) <- name($n)"))
            .map_err(logic_error)?;
        let services: Vec<(bool,)> = authorizer
            .query(rule!("q($s) <- service($s)"))
            .map_err(logic_error)?;
        Ok(Self {
            tenants: one(tenants),
            users: one(users),
            roles: one(roles),
            names: one(names),
            services: services.into_iter().map(|(v,)| v).collect(),
        })
    }

    fn into_identity(self, requested: &TenantId) -> Result<Identity, AuthError> {
        let malformed = |what: &str| AuthError::Malformed(what.to_owned());
        let [tenant] = self.tenants.as_slice() else {
            return Err(malformed("the token must state exactly one tenant"));
        };
        if tenant != requested.as_str() {
            return Err(AuthError::WrongTenant);
        }
        let [user] = self.users.as_slice() else {
            return Err(malformed("the token must state exactly one user"));
        };
        let user = UserId::parse(user.as_str()).map_err(|_| malformed("invalid user id"))?;
        let kind = match (self.roles.as_slice(), self.services.as_slice()) {
            ([role], []) => match Role::parse(role) {
                Ok(role) => ActorKind::Staff(role),
                // Genuine, but outside the matrix: a refusal to audit, not a
                // token that proves nothing.
                Err(_) => {
                    return Err(AuthError::UnknownRole {
                        tenant: requested.clone(),
                        user,
                        role: role.chars().take(64).collect(),
                    });
                }
            },
            ([], [true]) => ActorKind::Service,
            _ => return Err(malformed("the token must state one role or service(true)")),
        };
        let name = match self.names.as_slice() {
            [] => None,
            [name] => Some(DisplayName::parse(name).map_err(|_| malformed("invalid name"))?),
            _ => return Err(malformed("the token states several names")),
        };
        Ok(Identity {
            tenant: requested.clone(),
            user,
            kind,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use biscuit_auth::macros::block;

    use super::*;
    use crate::keys::RootKeyPair;
    use crate::mint::TokenMinter;

    fn tenant(t: &str) -> TenantId {
        TenantId::parse(t).unwrap()
    }

    fn staff(role: Role) -> Identity {
        Identity {
            tenant: tenant("acme"),
            user: UserId::parse("u1").unwrap(),
            kind: ActorKind::Staff(role),
            name: Some(DisplayName::parse("Awa Diop").unwrap()),
        }
    }

    fn setup() -> (TokenMinter, TokenVerifier) {
        let minter = TokenMinter::new(RootKeyPair::generate());
        let verifier = TokenVerifier::new(minter.root().public());
        (minter, verifier)
    }

    fn hour() -> Duration {
        Duration::from_secs(3600)
    }

    fn attenuate(
        token: &str,
        verifier: &TokenVerifier,
        code: biscuit_auth::builder::BlockBuilder,
    ) -> String {
        Biscuit::from_base64(token, verifier.root.key())
            .unwrap()
            .append(code)
            .unwrap()
            .to_base64()
            .unwrap()
    }

    #[test]
    fn a_staff_token_round_trips_its_identity() {
        let (minter, verifier) = setup();
        let token = minter.mint(&staff(Role::Dg), hour()).unwrap();
        let identity = verifier
            .verify(&token, &tenant("acme"), Operation::Write)
            .unwrap();
        assert_eq!(identity, staff(Role::Dg));
        let actor = identity.to_actor();
        assert_eq!(actor.kind, ActorKind::Staff(Role::Dg));
        assert_eq!(actor.user.as_str(), "u1");
    }

    #[test]
    fn a_genuine_token_with_a_role_outside_the_matrix_is_forbidden_not_invalid() {
        let (minter, verifier) = setup();
        let key = biscuit_auth::KeyPair::from(
            &biscuit_auth::PrivateKey::from_bytes_hex(
                &minter.root().to_hex(),
                biscuit_auth::Algorithm::Ed25519,
            )
            .unwrap(),
        );
        let token =
            biscuit_auth::macros::biscuit!(r#"tenant("acme"); user("u1"); role("COMPTABLE");"#)
                .build(&key)
                .unwrap()
                .to_base64()
                .unwrap();
        let err = verifier
            .verify(&token, &tenant("acme"), Operation::Read)
            .unwrap_err();
        assert_eq!(
            err,
            AuthError::UnknownRole {
                tenant: tenant("acme"),
                user: UserId::parse("u1").unwrap(),
                role: "COMPTABLE".into(),
            }
        );
        assert_eq!((err.code(), err.is_forbidden()), ("forbidden", true));
        // Anywhere else it is still the tenant that is wrong.
        assert_eq!(
            verifier.verify(&token, &tenant("other"), Operation::Read),
            Err(AuthError::WrongTenant)
        );
    }

    #[test]
    fn a_service_token_has_no_role() {
        let (minter, verifier) = setup();
        let service = Identity {
            kind: ActorKind::Service,
            name: None,
            ..staff(Role::Pdg)
        };
        let token = minter.mint(&service, hour()).unwrap();
        let identity = verifier
            .verify(&token, &tenant("acme"), Operation::Read)
            .unwrap();
        assert_eq!(identity.kind, ActorKind::Service);
        assert_eq!(identity.name, None);
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let (minter, verifier) = setup();
        let past = SystemTime::now() - Duration::from_secs(10);
        let token = minter.mint_until(&staff(Role::Pdg), past).unwrap();
        let err = verifier
            .verify(&token, &tenant("acme"), Operation::Read)
            .unwrap_err();
        assert_eq!(err, AuthError::Expired);
        assert_eq!(err.code(), "token_expired");
        assert!(!err.is_forbidden());
    }

    #[test]
    fn a_foreign_tenant_is_refused_as_mismatch() {
        let (minter, verifier) = setup();
        let token = minter.mint(&staff(Role::Pdg), hour()).unwrap();
        let err = verifier
            .verify(&token, &tenant("other"), Operation::Read)
            .unwrap_err();
        assert_eq!(err, AuthError::WrongTenant);
        assert_eq!(err.code(), "tenant_mismatch");
        assert!(err.is_forbidden());
    }

    #[test]
    fn a_read_only_attenuation_allows_reads_and_refuses_writes() {
        let (minter, verifier) = setup();
        let token = minter.mint(&staff(Role::Employe), hour()).unwrap();
        let read_only = attenuate(&token, &verifier, block!(r#"check if operation("read");"#));
        assert!(
            verifier
                .verify(&read_only, &tenant("acme"), Operation::Read)
                .is_ok()
        );
        let err = verifier
            .verify(&read_only, &tenant("acme"), Operation::Write)
            .unwrap_err();
        assert_eq!(err, AuthError::OperationRefused);
        assert_eq!(err.code(), "operation_not_allowed");
    }

    #[test]
    fn an_attenuated_expiry_counts_as_expired() {
        let (minter, verifier) = setup();
        let token = minter.mint(&staff(Role::Dg), hour()).unwrap();
        let past = SystemTime::now() - Duration::from_secs(10);
        let short = attenuate(
            &token,
            &verifier,
            block!("check if time($t), $t <= {past};", past = past),
        );
        let err = verifier
            .verify(&short, &tenant("acme"), Operation::Read)
            .unwrap_err();
        assert_eq!(err, AuthError::Expired);
    }

    #[test]
    fn identity_facts_in_an_appended_block_are_ignored() {
        let (minter, verifier) = setup();
        let token = minter.mint(&staff(Role::Employe), hour()).unwrap();
        let forged = attenuate(
            &token,
            &verifier,
            block!(r#"user("admin"); role("PDG"); tenant("other"); service(true);"#),
        );
        let identity = verifier
            .verify(&forged, &tenant("acme"), Operation::Write)
            .unwrap();
        assert_eq!(identity, staff(Role::Employe));
        // Nor can an appended block move the token to another tenant.
        assert_eq!(
            verifier
                .verify(&forged, &tenant("other"), Operation::Read)
                .unwrap_err(),
            AuthError::WrongTenant
        );
    }

    #[test]
    fn a_token_of_another_root_key_has_a_bad_signature() {
        let (minter, _) = setup();
        let (_, other_verifier) = setup();
        let token = minter.mint(&staff(Role::Pdg), hour()).unwrap();
        let err = other_verifier
            .verify(&token, &tenant("acme"), Operation::Read)
            .unwrap_err();
        assert_eq!(err, AuthError::BadSignature);
        assert_eq!(err.code(), "invalid_token");
    }

    #[test]
    fn garbage_oversize_and_empty_tokens_are_malformed() {
        let (minter, verifier) = setup();
        let acme = tenant("acme");
        for bad in ["", "   ", "not a token", "AAAA"] {
            let err = verifier.verify(bad, &acme, Operation::Read).unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{bad}: {err:?}");
        }
        let huge = "A".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(
            verifier.verify(&huge, &acme, Operation::Read),
            Err(AuthError::Malformed(_))
        ));
        // Too many attenuation blocks.
        let mut token = minter.mint(&staff(Role::Pdg), hour()).unwrap();
        for _ in 0..MAX_TOKEN_BLOCKS {
            token = attenuate(&token, &verifier, block!(r#"check if operation("read");"#));
        }
        assert!(matches!(
            verifier.verify(&token, &acme, Operation::Read),
            Err(AuthError::Malformed(_))
        ));
    }

    fn assert_send_sync_debug_clone<T: Send + Sync + fmt::Debug + Clone>() {}

    #[test]
    fn a_verified_token_is_shareable_and_never_prints_itself() {
        assert_send_sync_debug_clone::<VerifiedToken>();
        let (minter, verifier) = setup();
        let token = minter.mint(&staff(Role::Dg), hour()).unwrap();
        let printed = format!("{:?}", verifier.open(&token).unwrap());
        assert_eq!(printed, "VerifiedToken { blocks: 1, .. }");
    }

    /// A whole second `secs` after the epoch.
    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Now, to the second.
    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn a_kept_decision_serves_until_the_expiry_second_and_not_after() {
        let (minter, verifier) = setup();
        let acme = tenant("acme");
        let expiry = now_secs() + 3600;
        let token = minter.mint_until(&staff(Role::Dg), at(expiry)).unwrap();
        let opened = verifier.open(&token).unwrap();
        let evaluations = || opened.inner.decisions.evaluations();
        let start = expiry - 100;
        assert_eq!(
            opened.authorize_at(&acme, Operation::Write, at(start)),
            Ok(staff(Role::Dg))
        );
        for later in [start + 1, start + 50, expiry - 1] {
            assert_eq!(
                opened.authorize_at(&acme, Operation::Write, at(later)),
                Ok(staff(Role::Dg))
            );
        }
        assert_eq!(evaluations(), 1, "the authorizer ran again within the span");
        // The expiry's own second is a span of its own (`<=` and `<` part there).
        assert_eq!(
            opened.authorize_at(&acme, Operation::Write, at(expiry)),
            Ok(staff(Role::Dg))
        );
        assert_eq!(
            opened.authorize_at(&acme, Operation::Write, at(expiry + 1)),
            Err(AuthError::Expired)
        );
        assert_eq!(evaluations(), 3);
    }

    #[test]
    fn a_one_second_attenuation_is_honoured_between_kept_decisions() {
        let (minter, verifier) = setup();
        let acme = tenant("acme");
        let blackout = now_secs() + 600;
        let token = minter.mint(&staff(Role::Dg), hour()).unwrap();
        let token = attenuate(
            &token,
            &verifier,
            block!("check if time($t), $t != {b};", b = at(blackout)),
        );
        let opened = verifier.open(&token).unwrap();
        let allowed = |secs| {
            opened
                .authorize_at(&acme, Operation::Read, at(secs))
                .is_ok()
        };
        assert!(allowed(blackout - 5));
        assert!(!allowed(blackout));
        assert!(allowed(blackout + 1));
        assert!(allowed(blackout + 2));
        // Back before it (a clock set back): the earlier span, not the later one.
        assert!(!allowed(blackout));
        assert!(allowed(blackout - 1));
    }

    #[test]
    fn a_kept_decision_is_for_its_tenant_and_operation_only() {
        let (minter, verifier) = setup();
        let token = minter.mint(&staff(Role::Employe), hour()).unwrap();
        let read_only = attenuate(&token, &verifier, block!(r#"check if operation("read");"#));
        let opened = verifier.open(&read_only).unwrap();
        let now = SystemTime::now();
        assert!(
            opened
                .authorize_at(&tenant("acme"), Operation::Read, now)
                .is_ok()
        );
        assert!(
            opened
                .authorize_at(&tenant("acme"), Operation::Read, now)
                .is_ok()
        );
        assert_eq!(
            opened.authorize_at(&tenant("acme"), Operation::Write, now),
            Err(AuthError::OperationRefused)
        );
        assert_eq!(
            opened.authorize_at(&tenant("other"), Operation::Read, now),
            Err(AuthError::WrongTenant)
        );
        assert_eq!(opened.inner.decisions.evaluations(), 3);
    }

    #[test]
    fn a_not_before_attenuation_is_not_served_early_from_a_kept_decision() {
        let (minter, verifier) = setup();
        let acme = tenant("acme");
        let token = minter.mint(&staff(Role::Pdg), hour()).unwrap();
        let from = now_secs() + 60;
        let token = attenuate(
            &token,
            &verifier,
            block!("check if time($t), $t >= {from};", from = at(from)),
        );
        let opened = verifier.open(&token).unwrap();
        assert!(
            opened
                .authorize_at(&acme, Operation::Read, at(from + 5))
                .is_ok()
        );
        assert_eq!(
            opened.authorize_at(&acme, Operation::Read, at(from - 1)),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn an_opened_token_is_refused_once_expired() {
        let (minter, verifier) = setup();
        let acme = tenant("acme");
        // Expiry is stored truncated to the second: two seconds ahead leaves at
        // least one whole second of validity for the first checks, even on a
        // slow machine, and the loop below then waits for the refusal.
        let expires = SystemTime::now() + Duration::from_secs(2);
        let token = minter.mint_until(&staff(Role::Dg), expires).unwrap();
        let opened = verifier.open(&token).unwrap();
        assert_eq!(
            opened.authorize(&acme, Operation::Read).unwrap(),
            staff(Role::Dg)
        );
        assert_eq!(opened.permits(&acme, Operation::Read), Ok(()));
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        while secs(SystemTime::now()) <= secs(expires) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            opened.authorize(&acme, Operation::Read).unwrap_err(),
            AuthError::Expired
        );
        assert_eq!(
            opened.permits(&acme, Operation::Read).unwrap_err(),
            AuthError::Expired
        );
        // Sent again, it comes from the kept tokens and is refused all the same.
        assert_eq!(
            verifier.verify(&token, &acme, Operation::Read).unwrap_err(),
            AuthError::Expired
        );
        assert_eq!(verifier.reopened(), 1);
    }

    #[test]
    fn a_token_sent_again_skips_the_signatures_but_not_the_authorizer() {
        let (minter, verifier) = setup();
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let token = minter.mint(&staff(Role::Dg), hour()).unwrap();
        verifier.open(&token).unwrap();
        assert_eq!(verifier.reopened(), 0);
        let again = verifier
            .verify(&format!(" {token}\n"), &acme, Operation::Write)
            .unwrap();
        assert_eq!(again, staff(Role::Dg));
        assert_eq!(verifier.reopened(), 1);
        assert_eq!(
            verifier
                .verify(&token, &globex, Operation::Read)
                .unwrap_err(),
            AuthError::WrongTenant
        );
        assert_eq!(verifier.reopened(), 2);
        // An attenuated copy is another text: opened in full, and its own checks hold.
        let read_only = attenuate(&token, &verifier, block!(r#"check if operation("read");"#));
        assert_eq!(
            verifier
                .verify(&read_only, &acme, Operation::Write)
                .unwrap_err(),
            AuthError::OperationRefused
        );
        assert_eq!(verifier.reopened(), 2);
        assert_eq!(verifier.kept(), 2);
    }

    #[test]
    fn a_tampered_copy_of_a_kept_token_is_refused() {
        let (minter, verifier) = setup();
        let token = minter.mint(&staff(Role::Dg), hour()).unwrap();
        verifier.open(&token).unwrap();
        // The last characters are the signature's.
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(verifier.open(&tampered).is_err());
        assert_eq!(verifier.reopened(), 0);
        assert_eq!(verifier.kept(), 1, "a refused token is not kept");
    }

    #[test]
    fn kept_tokens_are_bounded_and_those_in_use_stay() {
        let minter = TokenMinter::new(RootKeyPair::generate());
        let verifier = TokenVerifier::with_capacity(minter.root().public(), 4);
        let tokens: Vec<String> = (0..12)
            .map(|i| {
                let identity = Identity {
                    user: UserId::parse(format!("u{i}")).unwrap(),
                    ..staff(Role::Employe)
                };
                minter.mint(&identity, hour()).unwrap()
            })
            .collect();
        for token in &tokens {
            verifier.open(token).unwrap();
            // Token 0 is in use all along.
            verifier.open(&tokens[0]).unwrap();
            assert!(verifier.kept() <= 8, "{}", verifier.kept());
        }
        let hits = verifier.reopened();
        assert_eq!(
            hits, 12,
            "token 0 was answered from the kept ones every time"
        );
        verifier.open(&tokens[1]).unwrap();
        assert_eq!(verifier.reopened(), hits, "token 1 had aged out");
        verifier.open(&tokens[11]).unwrap();
        assert_eq!(verifier.reopened(), hits + 1, "token 11 is recent");
    }

    #[test]
    fn an_already_expired_token_opens_but_is_refused_as_expired() {
        let (minter, verifier) = setup();
        let past = SystemTime::now() - Duration::from_secs(10);
        let token = minter.mint_until(&staff(Role::Pdg), past).unwrap();
        let opened = verifier.open(&token).unwrap();
        for _ in 0..2 {
            assert_eq!(
                opened
                    .authorize(&tenant("acme"), Operation::Read)
                    .unwrap_err(),
                AuthError::Expired
            );
        }
    }

    #[test]
    fn a_read_only_token_opened_once_permits_reads_and_refuses_writes() {
        let (minter, verifier) = setup();
        let acme = tenant("acme");
        let token = minter.mint(&staff(Role::Employe), hour()).unwrap();
        let read_only = attenuate(&token, &verifier, block!(r#"check if operation("read");"#));
        let opened = verifier.open(&read_only).unwrap();
        assert_eq!(
            opened.authorize(&acme, Operation::Read).unwrap(),
            staff(Role::Employe)
        );
        assert_eq!(opened.permits(&acme, Operation::Read), Ok(()));
        assert_eq!(
            opened.permits(&acme, Operation::Write),
            Err(AuthError::OperationRefused)
        );
        assert_eq!(
            opened.authorize(&acme, Operation::Write),
            Err(AuthError::OperationRefused)
        );
        // And reads stay allowed after a refused write.
        assert_eq!(opened.permits(&acme, Operation::Read), Ok(()));
    }

    #[test]
    fn permits_and_authorize_agree_on_every_outcome() {
        let (minter, verifier) = setup();
        let past = SystemTime::now() - Duration::from_secs(10);
        let valid = minter.mint(&staff(Role::Dg), hour()).unwrap();
        let expired = minter.mint_until(&staff(Role::Dg), past).unwrap();
        let read_only = attenuate(&valid, &verifier, block!(r#"check if operation("read");"#));
        let short = attenuate(
            &valid,
            &verifier,
            block!("check if time($t), $t <= {past};", past = past),
        );
        let forged = attenuate(&valid, &verifier, block!(r#"tenant("other");"#));
        let expired_read_only = attenuate(
            &expired,
            &verifier,
            block!(r#"check if operation("read");"#),
        );
        let cases = [
            (&valid, "acme", Operation::Write, Ok(())),
            (
                &valid,
                "other",
                Operation::Read,
                Err(AuthError::WrongTenant),
            ),
            (&expired, "acme", Operation::Read, Err(AuthError::Expired)),
            (&expired, "other", Operation::Read, Err(AuthError::Expired)),
            (&read_only, "acme", Operation::Read, Ok(())),
            (
                &read_only,
                "acme",
                Operation::Write,
                Err(AuthError::OperationRefused),
            ),
            (
                &read_only,
                "other",
                Operation::Write,
                Err(AuthError::WrongTenant),
            ),
            (&short, "acme", Operation::Read, Err(AuthError::Expired)),
            (
                &forged,
                "other",
                Operation::Read,
                Err(AuthError::WrongTenant),
            ),
            (
                &expired_read_only,
                "acme",
                Operation::Write,
                Err(AuthError::Expired),
            ),
        ];
        for (i, (token, t, operation, expected)) in cases.into_iter().enumerate() {
            let opened = verifier.open(token).unwrap();
            let t = tenant(t);
            let authorized = opened.authorize(&t, operation).map(|_| ());
            let permitted = opened.permits(&t, operation);
            let verified = verifier.verify(token, &t, operation).map(|_| ());
            assert_eq!(authorized, expected, "case {i}: authorize");
            assert_eq!(permitted, expected, "case {i}: permits");
            assert_eq!(verified, expected, "case {i}: verify");
        }
    }

    #[test]
    fn opening_applies_the_caps_and_the_signature_check() {
        let (minter, verifier) = setup();
        let (_, other_verifier) = setup();
        let token = minter.mint(&staff(Role::Pdg), hour()).unwrap();
        assert_eq!(
            other_verifier.open(&token).unwrap_err(),
            AuthError::BadSignature
        );
        let huge = "A".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(verifier.open(&huge), Err(AuthError::Malformed(_))));
        assert!(matches!(verifier.open(" "), Err(AuthError::Malformed(_))));
        let mut long = token;
        for _ in 0..MAX_TOKEN_BLOCKS {
            long = attenuate(&long, &verifier, block!(r#"check if operation("read");"#));
        }
        assert!(matches!(verifier.open(&long), Err(AuthError::Malformed(_))));
    }
}
