//! The authorizer's allowing decisions for one opened token, kept while the
//! clock cannot change them.
//!
//! A socket re-authorizes its token on every event, and loading a token into a
//! biscuit authorizer is the costly part of that: about a tenth of the
//! server's CPU per message at 1,000 messages/s. Yet the outcome depends only
//! on the token (fixed once opened), the tenant, the operation and the time,
//! and the time only through the date literals the token's blocks contain:
//! datalog can compare dates (`<`, `<=`, `==`, …, set membership) but not
//! compute new ones, and the authorizer states no date but `time(now)`. So the
//! outcome is constant between two consecutive boundaries, where a boundary is
//! a literal `d` (where `$t < d` flips) or `d + 1 s` (where `$t <= d` and
//! `$t == d` flip). An allowing decision is kept with the span of whole
//! seconds it holds for, and reused only for a time inside that span: a token
//! still stops working at the exact second its expiry (or any attenuation)
//! says. Refusals are never kept (they close the socket or end the request).
//!
//! The literals are read from each block's datalog as the biscuit library
//! prints it (dates in RFC 3339). A token whose printed blocks contain
//! anything that looks like a date but does not read as one, or anything
//! the library could not print, is never memoized: it is authorized in full
//! on every use, as before. All this holds because the authorizer registers
//! no extern function (one could derive values from `$t`): see
//! `VerifiedToken::authorizer`.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use afritalk_ports::TenantId;
use biscuit_auth::Biscuit;

use crate::identity::{Identity, Operation};

/// The allowing decisions kept for one opened token, and the time boundaries
/// that bound them.
#[derive(Debug)]
pub(crate) struct Decisions {
    /// Sorted unix seconds at which some check may change its outcome, or
    /// `None` when the token's dates could not all be read (nothing is kept).
    boundaries: Option<Box<[u64]>>,
    /// What was allowed. Small and inline: every opened token of an idle
    /// socket carries it.
    allowed: Mutex<Allowed>,
    /// How many times the authorizer ran for this token (for tests).
    evaluations: AtomicU64,
}

/// The identity an allowing decision returned (the same for every one: the
/// token's claims are fixed, and only its own tenant is ever allowed), and
/// for each operation, by [`slot`], the seconds its decision holds for.
#[derive(Debug, Default)]
struct Allowed {
    identity: Option<Identity>,
    holds: [Option<Range<u64>>; 2],
}

impl Allowed {
    /// Whether a kept decision allows `operation` on `tenant` at `now`.
    fn allows(&self, tenant: &TenantId, operation: Operation, now: u64) -> bool {
        self.identity.as_ref().is_some_and(|i| &i.tenant == tenant)
            && self.holds[slot(operation)]
                .as_ref()
                .is_some_and(|holds| holds.contains(&now))
    }
}

/// Where the decision for `operation` is kept.
fn slot(operation: Operation) -> usize {
    match operation {
        Operation::Read => 0,
        Operation::Write => 1,
    }
}

impl Decisions {
    /// An empty memo for `biscuit`, its boundaries read from its blocks.
    pub(crate) fn for_token(biscuit: &Biscuit) -> Self {
        let boundaries = (0..biscuit.block_count())
            .map(|index| biscuit.print_block_source(index).ok())
            .try_fold(Vec::new(), |mut found, source| {
                found.extend(date_literals(&source?)?);
                Some(found)
            })
            .map(boundaries_of);
        Self {
            boundaries,
            allowed: Mutex::default(),
            evaluations: AtomicU64::new(0),
        }
    }

    /// Every change under the lock is one assignment, so a panic elsewhere
    /// cannot leave it inconsistent.
    fn allowed(&self) -> MutexGuard<'_, Allowed> {
        self.allowed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a kept decision allows `operation` on `tenant` at `now` (unix
    /// seconds).
    pub(crate) fn allows(&self, tenant: &TenantId, operation: Operation, now: u64) -> bool {
        self.allowed().allows(tenant, operation, now)
    }

    /// The identity of a kept decision allowing `operation` on `tenant` at
    /// `now` (unix seconds), if there is one.
    pub(crate) fn recall(
        &self,
        tenant: &TenantId,
        operation: Operation,
        now: u64,
    ) -> Option<Identity> {
        let allowed = self.allowed();
        if allowed.allows(tenant, operation, now) {
            allowed.identity.clone()
        } else {
            None
        }
    }

    /// Notes that the authorizer ran (whatever it decided).
    pub(crate) fn count_evaluation(&self) {
        self.evaluations.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times the authorizer ran for this token.
    #[cfg(test)]
    pub(crate) fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Relaxed)
    }

    /// Keeps the decision that `identity` may do `operation` on its tenant,
    /// made at `now` (unix seconds), for the span of seconds it holds for.
    pub(crate) fn remember(&self, operation: Operation, identity: &Identity, now: u64) {
        let Some(boundaries) = &self.boundaries else {
            return;
        };
        let mut allowed = self.allowed();
        if allowed.identity.as_ref() != Some(identity) {
            *allowed = Allowed {
                identity: Some(identity.clone()),
                holds: [None, None],
            };
        }
        allowed.holds[slot(operation)] = Some(span_around(boundaries, now));
    }
}

/// The sorted, distinct boundaries of a set of date literals: each literal and
/// the second after it.
fn boundaries_of(literals: Vec<u64>) -> Box<[u64]> {
    let mut boundaries: Vec<u64> = literals
        .into_iter()
        .flat_map(|d| [d, d.saturating_add(1)])
        .collect();
    boundaries.sort_unstable();
    boundaries.dedup();
    boundaries.into_boxed_slice()
}

/// The seconds around `now` in which no boundary falls: from the last
/// boundary at or before `now` up to (not including) the next one after it.
fn span_around(boundaries: &[u64], now: u64) -> Range<u64> {
    let after = boundaries.partition_point(|&b| b <= now);
    let start = after.checked_sub(1).map_or(0, |i| boundaries[i]);
    let end = boundaries.get(after).copied().unwrap_or(u64::MAX);
    start..end
}

/// The dates (unix seconds) written in a block's printed datalog, or `None`
/// when something there looks like a date but does not read as one.
fn date_literals(source: &str) -> Option<Vec<u64>> {
    // What biscuit cannot print it writes as `<invalid date>` or
    // `<invalid expression: …>`, the latter with dates in Rust's debug form
    // (`Date(1893456000)`): a date there would add no boundary, so nothing of
    // such a token is kept. An expression that cannot print may still
    // evaluate (`($t < d).try_or(…)` never reaches a malformed closure).
    if source.contains("<invalid") || source.contains("Date(") {
        return None;
    }
    let in_date = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | ':' | '.');
    let mut dates = Vec::new();
    for word in source.split(|c: char| !in_date(c)) {
        let looks_like_date = word.starts_with(|c: char| c.is_ascii_digit() || c == '-')
            && word.contains('T')
            && word.contains(':');
        if !looks_like_date {
            continue;
        }
        let date = chrono::DateTime::parse_from_rfc3339(word).ok()?;
        dates.push(u64::try_from(date.timestamp()).ok()?);
    }
    Some(dates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_from_printed_datalog() {
        let source = "user(\"u1\");\ncheck if time($t), $t <= 2030-01-01T00:00:00Z;\n\
                      check if time($t), [2031-01-01T00:00:00Z, 1970-01-01T00:00:10Z].contains($t);\n";
        assert_eq!(
            date_literals(source),
            Some(vec![1_893_456_000, 1_924_992_000, 10])
        );
        assert_eq!(date_literals("check if operation(\"read\");"), Some(vec![]));
    }

    #[test]
    fn a_date_that_does_not_read_keeps_nothing() {
        assert_eq!(
            date_literals("check if time($t), $t < <invalid date>;"),
            None
        );
        let unprintable = "check if time($t), <invalid expression: [Value(Date(1893456000))]>;";
        assert_eq!(date_literals(unprintable), None);
        assert_eq!(
            date_literals("check if time($t), $t < 2030-13-01T00:00:00Z;"),
            None
        );
        assert_eq!(
            date_literals("check if time($t), $t < -0001-01-01T00:00:00Z;"),
            None
        );
    }

    #[test]
    fn a_span_stops_at_the_next_boundary_and_starts_at_the_last() {
        let boundaries = boundaries_of(vec![100, 200, 100]);
        assert_eq!(*boundaries, [100, 101, 200, 201]);
        assert_eq!(span_around(&boundaries, 50), 0..100);
        assert_eq!(span_around(&boundaries, 100), 100..101);
        assert_eq!(span_around(&boundaries, 150), 101..200);
        assert_eq!(span_around(&boundaries, 201), 201..u64::MAX);
        assert_eq!(span_around(&[], 7), 0..u64::MAX);
    }
}
