//! The shared rate limiter: the same sliding-window log as the in-process
//! limiter, kept in Redis so that a user's attempts count together whichever
//! node receives them.
//!
//! Key, under the prefix `P`: `P rate:{tenant}:{user}:{action}`, a sorted set of
//! the allowed attempts still inside the window, scored by their time (Redis
//! clock, µs). One Lua script prunes, counts, decides and records, so two nodes
//! checking at the same instant cannot both take the last slot.

use std::fmt;
use std::time::Duration;

use afritalk_ports::{
    RateAction, RateDecision, RateLimiter, RateLimits, StoreResult, TenantId, UserId,
};
use async_trait::async_trait;
use deadpool_redis::Pool;
use deadpool_redis::redis::Script;

use crate::commands::SharedCommands;
use crate::unavailable;

/// KEYS: the window. ARGV: window (µs), max attempts.
/// Answers {1, 0} when allowed (and recorded), {0, µs until a slot frees} when refused.
const CHECK: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < tonumber(ARGV[2]) then
  -- The count makes members unique among attempts in the same microsecond.
  redis.call('ZADD', KEYS[1], now, t[1] .. '.' .. t[2] .. ':' .. count)
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = tonumber(oldest[2]) + window - now
if retry < 1 then retry = 1 end
return {0, retry}
"#;

/// Sliding-window rate limiter shared by every node through Redis.
///
/// Each (tenant, user, action) keeps the times of its allowed attempts within the
/// window, at most `max` of them. An attempt passes when fewer than `max` remain;
/// a refused attempt records nothing, so it does not consume allowance, and its
/// `retry_after` is the time until the oldest allowed attempt leaves the window.
/// Time is Redis's clock, so nodes with skewed clocks share one window.
pub struct RedisRateLimiter {
    commands: SharedCommands,
    prefix: String,
    limits: RateLimits,
    check: Script,
}

impl RedisRateLimiter {
    /// A limiter applying `limits` over `pool`, with every key under `prefix`.
    pub fn new(pool: Pool, prefix: impl Into<String>, limits: RateLimits) -> Self {
        Self {
            commands: SharedCommands::new(pool),
            prefix: prefix.into(),
            limits,
            check: Script::new(CHECK),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    fn key(&self, tenant: &TenantId, user: &UserId, action: RateAction) -> String {
        format!("{}rate:{tenant}:{user}:{}", self.prefix, action.as_str())
    }
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(
        &self,
        tenant: &TenantId,
        user: &UserId,
        action: RateAction,
    ) -> StoreResult<RateDecision> {
        let limit = self.limits.get(action);
        if limit.max == 0 {
            return Ok(RateDecision::Limited {
                retry_after: limit.per,
            });
        }
        let window_us = u64::try_from(limit.per.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut conn = self.commands.get("rate limit").await?;
        let (allowed, retry_us): (i64, i64) = self
            .check
            .key(self.key(tenant, user, action))
            .arg(window_us)
            .arg(limit.max)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("rate limit", e))?;
        if allowed == 1 {
            return Ok(RateDecision::Allowed);
        }
        let retry_after = u64::try_from(retry_us)
            .map(Duration::from_micros)
            .unwrap_or(limit.per)
            .min(limit.per);
        Ok(RateDecision::Limited { retry_after })
    }
}
