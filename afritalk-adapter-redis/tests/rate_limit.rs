//! `RedisRateLimiter` against real Redis: the in-process limiter's behaviours,
//! shared by two limiter instances standing for two nodes. Time is Redis's own
//! clock, so windows here are short and the tests sleep through them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use afritalk_adapter_redis::{RedisRateLimiter, connect_pool};
use afritalk_ports::{RateAction, RateDecision, RateLimit, RateLimiter, RateLimits, StoreError};

use common::{Namespace, PrivateRedis, eventually, tenant, user};

fn limiter(ns: &Namespace, max: u32, per: Duration) -> RedisRateLimiter {
    let limits = RateLimits::default().with(RateAction::Send, RateLimit::new(max, per));
    RedisRateLimiter::new(ns.pool.clone(), &ns.prefix, limits)
}

async fn check(limiter: &RedisRateLimiter, t: &str, u: &str, action: RateAction) -> RateDecision {
    limiter.check(&tenant(t), &user(u), action).await.unwrap()
}

fn retry_after(decision: RateDecision) -> Duration {
    match decision {
        RateDecision::Limited { retry_after } => retry_after,
        RateDecision::Allowed => panic!("expected Limited, got Allowed"),
    }
}

/// The window of the tests that sleep through one: long against a stalled
/// test runner's pauses (a check made late must still find the attempts it
/// expects inside the window), short enough to wait for.
const WINDOW: Duration = Duration::from_secs(4);

#[tokio::test]
async fn allows_max_attempts_then_refuses_with_the_time_until_the_next_passes() {
    let ns = Namespace::new().await;
    let limiter = limiter(&ns, 3, WINDOW);
    let gap = WINDOW / 4;
    let first = Instant::now();
    assert_eq!(
        check(&limiter, "t", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
    tokio::time::sleep(gap).await;
    assert_eq!(
        check(&limiter, "t", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
    assert_eq!(
        check(&limiter, "t", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
    let wait = retry_after(check(&limiter, "t", "u", RateAction::Send).await);
    // The first attempt leaves the window a whole window after it was made.
    let expected = WINDOW.saturating_sub(first.elapsed());
    assert!(wait <= WINDOW - gap, "{wait:?}");
    assert!(
        wait + Duration::from_millis(100) >= expected,
        "{wait:?} vs {expected:?}"
    );

    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    assert_eq!(
        check(&limiter, "t", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
    // Only one slot came free: the next frees when the second attempt leaves
    // (about `gap` later, more if the runner stalled in between), well
    // before a whole window.
    let next = retry_after(check(&limiter, "t", "u", RateAction::Send).await);
    assert!(next <= 2 * gap, "{next:?}");
}

#[tokio::test]
async fn two_nodes_share_one_allowance() {
    let ns = Namespace::new().await;
    let (node1, node2) = (
        limiter(&ns, 3, Duration::from_secs(10)),
        limiter(&ns, 3, Duration::from_secs(10)),
    );
    assert_eq!(
        check(&node1, "t", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
    assert_eq!(
        check(&node2, "t", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
    assert_eq!(
        check(&node1, "t", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
    let wait = retry_after(check(&node2, "t", "u", RateAction::Send).await);
    // The first attempt's window, less the time the four calls took.
    assert!(
        wait > Duration::from_secs(5) && wait <= Duration::from_secs(10),
        "{wait:?}"
    );
    retry_after(check(&node1, "t", "u", RateAction::Send).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_attempts_on_two_nodes_never_exceed_the_limit() {
    let ns = Namespace::new().await;
    let nodes = std::sync::Arc::new([
        limiter(&ns, 5, Duration::from_secs(10)),
        limiter(&ns, 5, Duration::from_secs(10)),
    ]);
    let attempts: Vec<_> = (0..40)
        .map(|i| {
            let nodes = nodes.clone();
            tokio::spawn(async move { check(&nodes[i % 2], "t", "u", RateAction::Send).await })
        })
        .collect();
    let mut allowed = 0;
    for attempt in attempts {
        if attempt.await.unwrap() == RateDecision::Allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);
}

#[tokio::test]
async fn refused_attempts_do_not_consume_allowance() {
    let ns = Namespace::new().await;
    let limiter = limiter(&ns, 2, WINDOW);
    assert_eq!(
        check(&limiter, "t", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
    assert_eq!(
        check(&limiter, "t", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
    // Both attempts were made before this instant, however long they took.
    let start = Instant::now();
    for _ in 0..10 {
        tokio::time::sleep(WINDOW / 40).await;
        retry_after(check(&limiter, "t", "u", RateAction::Send).await);
    }
    // Hammering did not push the window: both slots free a window after the
    // first two.
    tokio::time::sleep((WINDOW + Duration::from_millis(150)).saturating_sub(start.elapsed())).await;
    assert_eq!(
        check(&limiter, "t", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
    assert_eq!(
        check(&limiter, "t", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
}

#[tokio::test]
async fn recovers_fully_after_the_window() {
    let ns = Namespace::new().await;
    let limiter = limiter(&ns, 5, WINDOW);
    for _ in 0..5 {
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Send).await,
            RateDecision::Allowed
        );
    }
    let wait = retry_after(check(&limiter, "t", "u", RateAction::Send).await);
    assert!(wait <= WINDOW);
    tokio::time::sleep(WINDOW + Duration::from_millis(50)).await;
    for _ in 0..5 {
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Send).await,
            RateDecision::Allowed
        );
    }
    // The window key does not outlive its window by much.
    tokio::time::sleep(WINDOW + Duration::from_millis(100)).await;
    assert!(ns.keys().is_empty(), "{:?}", ns.keys());
}

#[tokio::test]
async fn users_actions_and_tenants_have_separate_allowances() {
    let ns = Namespace::new().await;
    let limiter = limiter(&ns, 1, Duration::from_secs(10));
    assert_eq!(
        check(&limiter, "t", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
    retry_after(check(&limiter, "t", "u", RateAction::Send).await);
    assert_eq!(
        check(&limiter, "t", "v", RateAction::Send).await,
        RateDecision::Allowed
    );
    assert_eq!(
        check(&limiter, "other", "u", RateAction::Send).await,
        RateDecision::Allowed
    );
    assert_eq!(
        check(&limiter, "t", "u", RateAction::Modify).await,
        RateDecision::Allowed
    );
}

#[tokio::test]
async fn a_zero_limit_refuses_everything() {
    let ns = Namespace::new().await;
    let limiter = limiter(&ns, 0, Duration::from_secs(10));
    assert_eq!(
        check(&limiter, "t", "u", RateAction::Send).await,
        RateDecision::Limited {
            retry_after: Duration::from_secs(10)
        }
    );
}

#[tokio::test]
async fn an_unreachable_redis_is_reported_as_unavailable() {
    // Port 1 (tcpmux): nothing listens there, and no test's Redis can take it.
    let pool = connect_pool("redis://127.0.0.1:1", 2).unwrap();
    let limiter = RedisRateLimiter::new(pool, "x:", RateLimits::default());
    let error = limiter
        .check(&tenant("t"), &user("u"), RateAction::Send)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

/// The connections `redis` accepted since it (re)started, this query's own
/// included: every connection opened counts, even one closed since.
async fn connections_received(redis: &PrivateRedis) -> u64 {
    let client = deadpool_redis::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = deadpool_redis::redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO stats counts the connections received")
}

/// The connections opened since `before` was counted, the two counting
/// queries' own left out.
async fn connections_opened_since(redis: &PrivateRedis, before: u64) -> u64 {
    connections_received(redis).await - before - 1
}

/// `count` checks of different users, made at once from their own tasks.
async fn concurrent_checks(
    limiter: &Arc<RedisRateLimiter>,
    count: usize,
) -> Vec<Result<RateDecision, StoreError>> {
    let checks: Vec<_> = (0..count)
        .map(|i| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                limiter
                    .check(&tenant("t"), &user(&format!("u{i}")), RateAction::Send)
                    .await
            })
        })
        .collect();
    let mut decisions = Vec::with_capacity(count);
    for check in checks {
        decisions.push(check.await.unwrap());
    }
    decisions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_share_one_connection_which_is_replaced_after_a_restart() {
    let mut redis = PrivateRedis::start();
    let pool = connect_pool(&redis.url(), 16).unwrap();
    let limits = RateLimits::default().with(
        RateAction::Send,
        RateLimit::new(1000, Duration::from_secs(10)),
    );
    let limiter = Arc::new(RedisRateLimiter::new(pool, "afritalk:", limits));
    let before = connections_received(&redis).await;
    for decision in concurrent_checks(&limiter, 64).await {
        assert_eq!(decision.unwrap(), RateDecision::Allowed);
    }
    // Pooled, 64 concurrent calls would have opened up to 16 connections;
    // racing to connect, as many as found none.
    assert_eq!(connections_opened_since(&redis, before).await, 1);

    redis.restart();
    let before = connections_received(&redis).await;
    // Unused for over a second, the connection is checked before use: the
    // first call after the restart already works.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let first = limiter
        .check(&tenant("t"), &user("first"), RateAction::Send)
        .await;
    assert_eq!(first.unwrap(), RateDecision::Allowed);
    assert_eq!(connections_opened_since(&redis, before).await, 1);

    // Restarted under a busy connection, a call may find it closed; it is
    // then replaced, and calls succeed again.
    limiter
        .check(&tenant("t"), &user("busy"), RateAction::Send)
        .await
        .unwrap();
    redis.restart();
    let before = connections_received(&redis).await;
    let recovered = eventually(async || {
        limiter
            .check(&tenant("t"), &user("after"), RateAction::Send)
            .await
            .is_ok()
    })
    .await;
    assert!(recovered, "the limiter did not reconnect after the restart");
    assert_eq!(connections_opened_since(&redis, before).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_against_a_hung_redis_fail_together_not_one_after_the_other() {
    let redis = PrivateRedis::start();
    let pool = connect_pool(&redis.url(), 16).unwrap();
    let limiter = Arc::new(RedisRateLimiter::new(
        pool,
        "afritalk:",
        RateLimits::default(),
    ));
    // Accepts connections (the kernel does) but never answers.
    redis.freeze(true);
    let started = Instant::now();
    for decision in concurrent_checks(&limiter, 8).await {
        let error = decision.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    }
    let took = started.elapsed();
    redis.freeze(false);
    // One connection attempt (about a second before it gives up here)
    // answers them all; waiting out an attempt each, in turn, took 8 s.
    assert!(took < Duration::from_secs(4), "{took:?}");
}
