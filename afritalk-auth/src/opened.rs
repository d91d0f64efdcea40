//! Tokens whose signatures were already checked, kept for their next request.
//!
//! A front end sends the same token with every REST call and every reconnect
//! for hours, and each [`TokenVerifier::open`](crate::verify::TokenVerifier::open)
//! of it repeated the Ed25519 work: during a burst of connects the signature
//! checks were about a quarter of the server's CPU. What is kept is only the
//! outcome of the signature check, under the exact token text: every use is
//! still authorized (time, tenant, operation), so an expired or attenuated
//! token is refused from here exactly as when freshly opened. Only tokens that
//! verified are kept; a token differing by one character is another key and
//! is checked in full.
//!
//! Memory is bounded by two generations of at most `capacity` tokens each:
//! when the current one fills up it becomes the previous one (the older
//! previous one is dropped), and a token found in the previous generation
//! moves back into the current one, so tokens in use stay while the others
//! age out within two generations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::verify::VerifiedToken;

/// Tokens kept per generation by default (two generations are kept; a parsed
/// token is a few KiB, so this bounds the cache to about 10–20 MiB).
pub(crate) const DEFAULT_CAPACITY: usize = 2048;

/// The kept tokens, shared by the clones of one verifier.
#[derive(Debug)]
pub(crate) struct OpenedTokens {
    capacity: usize,
    generations: Mutex<Generations>,
    hits: AtomicU64,
}

/// The two generations of kept tokens, by exact token text.
#[derive(Debug, Default)]
struct Generations {
    current: HashMap<Box<str>, VerifiedToken>,
    previous: HashMap<Box<str>, VerifiedToken>,
}

impl OpenedTokens {
    /// An empty cache of at most `capacity` tokens per generation (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            generations: Mutex::new(Generations::default()),
            hits: AtomicU64::new(0),
        }
    }

    /// The generations. Every change under the lock is a single map operation,
    /// so a panic elsewhere cannot leave them inconsistent: poisoning is ignored.
    fn generations(&self) -> MutexGuard<'_, Generations> {
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The opened token kept under `token`, if any.
    pub(crate) fn get(&self, token: &str) -> Option<VerifiedToken> {
        let mut generations = self.generations();
        let found = match generations.current.get(token) {
            Some(opened) => Some(opened.clone()),
            None => {
                let (key, opened) = generations.previous.remove_entry(token)?;
                self.insert_into(&mut generations, key, opened.clone());
                Some(opened)
            }
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `opened` (whose signatures verified) under `token`.
    pub(crate) fn put(&self, token: &str, opened: VerifiedToken) {
        let mut generations = self.generations();
        self.insert_into(&mut generations, token.into(), opened);
    }

    fn insert_into(&self, generations: &mut Generations, key: Box<str>, opened: VerifiedToken) {
        if generations.current.len() >= self.capacity {
            generations.previous = std::mem::take(&mut generations.current);
        }
        generations.current.insert(key, opened);
    }

    /// How many opens were answered from here so far.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// How many tokens are kept now (both generations).
    pub(crate) fn len(&self) -> usize {
        let generations = self.generations();
        generations.current.len() + generations.previous.len()
    }
}
