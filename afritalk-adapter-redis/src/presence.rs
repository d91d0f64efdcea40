//! Presence shared by every node through Redis: which users of a tenant have
//! live connections anywhere, and when each was last active. Statuses (online,
//! idle, offline) are derived from these facts by the core, not here.
//!
//! Keys, under the prefix `P`, for tenant `t` and user `u`:
//! - `P presence:{t}:conns:{u}` — sorted set of the user's connection ids, each
//!   scored by the moment (Redis clock, ms) it stops counting unless a node
//!   renews it. The key itself expires with its last member, so a node that
//!   dies without cleaning up leaves nothing behind after the TTL.
//! - `P presence:{t}:closed:{u}` — sorted set of the user's connections that
//!   closed within the last connection TTL, each scored by the moment it is
//!   forgotten: a heartbeat that listed a connection just before it closed
//!   must not bring it back once its close is recorded.
//! - `P presence:{t}:users` — sorted set of the tenant's known users scored by
//!   `lastSeen` (µs since the epoch, exact in a double until the year 2255);
//!   kept for [`PresenceOptions::last_seen_ttl`] after the last activity.
//! - `P presence:nodes` — sorted set of the nodes holding connections, each
//!   scored by the moment (Redis clock, ms) its last renewed connection stops
//!   counting; `P presence:node:{n}:conns` — set of node `n`'s connections as
//!   `tenant user connection`. A node past its moment stopped without closing
//!   its sockets (it crashed): another node adopts its set
//!   ([`RedisPresence::adopt_orphans`]) to tell those users' watchers. A node
//!   stopping normally leaves its recently gone users there
//!   ([`RedisPresence::hand_over`]), so that their `offline` is announced.
//!
//! Expiry uses Redis's clock (`TIME` inside the scripts), so nodes with skewed
//! clocks agree on when a connection is dead; `lastSeen` is the domain time the
//! caller passes. Every change is one Lua script, so concurrent nodes never
//! interleave inside a read-modify-write.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use afritalk_ports::{
    ConnectionId, PresenceChange, PresenceRecord, PresenceTracker, StoreError, StoreResult,
    TenantId, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::Pool;
use deadpool_redis::redis::{self, Script};

use crate::commands::{Command, SharedCommands};
use crate::unavailable;

/// Shared Lua helpers, prepended to every presence script.
const LUA_HELPERS: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live(key, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return redis.call('ZCARD', key)
end
local function seen(users, user)
  local s = redis.call('ZSCORE', users, user)
  if s then return 1, tonumber(s) end
  return 0, 0
end
local function expire_with_last_member(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', key, math.ceil(tonumber(last[2]))) end
end
local function node_holds(members, nodes, member, node, expiry, keep_ms)
  redis.call('SADD', members, member)
  redis.call('PEXPIRE', members, keep_ms)
  redis.call('ZADD', nodes, 'GT', expiry, node)
  redis.call('PEXPIRE', nodes, keep_ms)
end
local function record_seen(users, user, at, ttl_ms)
  redis.call('ZADD', users, 'GT', at, user)
  redis.call('ZREMRANGEBYSCORE', users, '-inf', '(' .. (tonumber(at) - tonumber(ttl_ms) * 1000))
  redis.call('PEXPIRE', users, ttl_ms)
end
"#;

/// KEYS: conns, users, node's connections, nodes. ARGV: user, connection, at (µs),
/// connection TTL (ms), last-seen TTL (ms), node member, node, node record TTL (ms).
const CONNECT: &str = r#"
local now = now_ms()
local known, before_seen = seen(KEYS[2], ARGV[1])
local before_count = live(KEYS[1], now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2])
expire_with_last_member(KEYS[1])
node_holds(KEYS[3], KEYS[4], ARGV[6], ARGV[7], now + tonumber(ARGV[4]), ARGV[8])
record_seen(KEYS[2], ARGV[1], ARGV[3], ARGV[5])
local _, after_seen = seen(KEYS[2], ARGV[1])
return {known, before_seen, before_count, after_seen, redis.call('ZCARD', KEYS[1])}
"#;

/// KEYS: conns, users, node's connections, closed connections. ARGV: user,
/// connection, at (µs), last-seen TTL (ms), node member, connection TTL (ms).
const DISCONNECT: &str = r#"
local now = now_ms()
redis.call('SREM', KEYS[3], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[6]), ARGV[2])
redis.call('PEXPIRE', KEYS[4], ARGV[6])
local known, before_seen = seen(KEYS[2], ARGV[1])
if known == 0 then return {0, 0, 0, 0, 0} end
local before_count = live(KEYS[1], now)
-- Only the last connection's close is activity (see LocalPresence).
if redis.call('ZREM', KEYS[1], ARGV[2]) == 1 and redis.call('ZCARD', KEYS[1]) == 0 then
  record_seen(KEYS[2], ARGV[1], ARGV[3], ARGV[4])
end
local _, after_seen = seen(KEYS[2], ARGV[1])
return {1, before_seen, before_count, after_seen, redis.call('ZCARD', KEYS[1])}
"#;

/// KEYS: conns, users. ARGV: user, at (µs), last-seen TTL (ms).
const TOUCH: &str = r#"
local now = now_ms()
local known, before_seen = seen(KEYS[2], ARGV[1])
local count = live(KEYS[1], now)
record_seen(KEYS[2], ARGV[1], ARGV[2], ARGV[3])
local _, after_seen = seen(KEYS[2], ARGV[1])
return {known, before_seen, count, after_seen, count}
"#;

/// KEYS: conns, users, node's connections, closed connections. ARGV: user, at
/// (µs), connection TTL (ms), last-seen TTL (ms), node member prefix
/// (`tenant user `), node record TTL (ms), then the user's live connection ids
/// on the calling node (those whose close is already recorded are skipped).
const REANNOUNCE: &str = r#"
local now = now_ms()
for i = 7, #ARGV do
  if not redis.call('ZSCORE', KEYS[4], ARGV[i]) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[i])
    redis.call('SADD', KEYS[3], ARGV[5] .. ARGV[i])
  end
end
redis.call('PEXPIRE', KEYS[3], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
expire_with_last_member(KEYS[1])
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 0
"#;

/// KEYS: nodes. ARGV: node, connection TTL (ms), node record TTL (ms). Run after
/// a node renewed all its connections, so its moment is never before theirs.
const NODE_ALIVE: &str = r#"
local now = now_ms()
redis.call('ZADD', KEYS[1], 'GT', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
"#;

/// KEYS: nodes. ARGV: node key prefix, node key suffix, most nodes adopted.
/// Takes the connections of nodes past their moment and forgets those nodes,
/// in one step, so each stopped node is adopted by one caller only.
const ADOPT: &str = r#"
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local members = {}
for _, node in ipairs(dead) do
  local key = ARGV[1] .. node .. ARGV[2]
  for _, member in ipairs(redis.call('SMEMBERS', key)) do
    members[#members + 1] = member
  end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], node)
end
return {dead, members}
"#;

/// KEYS: node's connections, nodes. ARGV: node, node record TTL (ms), then
/// members (`tenant user -`). Leaves the users to whoever adopts the node
/// next, and makes the node due for adoption at once.
const HAND_OVER: &str = r#"
for i = 3, #ARGV do
  redis.call('SADD', KEYS[1], ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now_ms(), ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 0
"#;

/// Stopped nodes adopted per call (a caller adopts the rest on its next call).
const ADOPT_BATCH: usize = 16;

/// How long a node's record outlives its last renewal, at least: a node that
/// stopped is adopted by the next heartbeat of another one, which this leaves
/// ample room for, and a cluster that stopped whole does not leave its
/// records for good.
const NODE_RECORD_TTL: Duration = Duration::from_secs(3600);

/// Users re-announced per pipelined round trip.
const REANNOUNCE_BATCH: usize = 256;

/// How long presence facts live in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceOptions {
    /// How long a connection counts as live unless renewed by
    /// [`RedisPresence::reannounce`] (default 90 s; renew at least every third of it).
    pub connection_ttl: Duration,
    /// How long a user's `lastSeen` is kept after their last activity (default 30 days).
    pub last_seen_ttl: Duration,
}

impl Default for PresenceOptions {
    fn default() -> Self {
        Self {
            connection_ttl: Duration::from_secs(90),
            last_seen_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Presence facts shared by every node through Redis.
///
/// Users are keyed by tenant first, so the same user id in two tenants names two
/// different people and a snapshot never reads another tenant's entries.
/// `lastSeen` never moves backwards. A connection stays live only while some node
/// renews it: each node calls [`reannounce`](Self::reannounce) with its live
/// sockets every [`heartbeat_interval`](Self::heartbeat_interval), which also
/// rebuilds everything after Redis lost its data.
pub struct RedisPresence {
    commands: SharedCommands,
    prefix: String,
    options: PresenceOptions,
    /// This process's name among the nodes (random, new at every start).
    node: String,
    connect: Script,
    disconnect: Script,
    touch: Script,
    reannounce: Script,
    node_alive: Script,
    adopt: Script,
    hand_over: Script,
}

/// What [`RedisPresence::adopt_orphans`] took over from nodes that stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Orphans {
    /// How many stopped nodes were adopted.
    pub nodes: usize,
    /// Their users (tenant first), each once, in order.
    pub users: Vec<(TenantId, UserId)>,
}

/// What the scripts answer: known (0/1), before lastSeen, before count, after lastSeen, after count.
type Facts = (i64, i64, i64, i64, i64);

impl RedisPresence {
    /// The records of `users` (with their last-seen scores), each with its live
    /// connections counted at `now_ms`. Read-only: expired connections are left
    /// for the next write (or the key's own expiry) to remove, and simply not
    /// counted here.
    async fn with_connections(
        &self,
        conn: &mut Command,
        tenant: &TenantId,
        now_ms: i64,
        users: Vec<(UserId, f64)>,
    ) -> StoreResult<Vec<PresenceRecord>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (user, _) in &users {
            pipe.cmd("ZCOUNT")
                .arg(self.conns_key(tenant, user))
                .arg(format!("({now_ms}"))
                .arg("+inf");
        }
        let counts: Vec<i64> = pipe
            .query_async(conn)
            .await
            .map_err(|e| unavailable("presence: connections", e))?;
        users
            .into_iter()
            .zip(counts)
            .map(|((user_id, seen), count)| {
                Ok(PresenceRecord {
                    user_id,
                    connections: u32::try_from(count).unwrap_or(u32::MAX),
                    last_seen: from_micros(seen.round() as i64)?,
                })
            })
            .collect()
    }

    /// A tracker over `pool`, with every key under `prefix` (e.g. `afritalk:`).
    pub fn new(pool: Pool, prefix: impl Into<String>, options: PresenceOptions) -> Self {
        let script = |body: &str| Script::new(&format!("{LUA_HELPERS}{body}"));
        Self {
            commands: SharedCommands::new(pool),
            prefix: prefix.into(),
            options,
            node: uuid::Uuid::new_v4().simple().to_string(),
            connect: script(CONNECT),
            disconnect: script(DISCONNECT),
            touch: script(TOUCH),
            reannounce: script(REANNOUNCE),
            node_alive: script(NODE_ALIVE),
            adopt: script(ADOPT),
            hand_over: script(HAND_OVER),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &PresenceOptions {
        &self.options
    }

    /// How often each node should call [`reannounce`](Self::reannounce): a third of
    /// the connection TTL, so one lost round trip does not expire live sockets.
    pub fn heartbeat_interval(&self) -> Duration {
        self.options.connection_ttl / 3
    }

    /// Renews every live connection of the calling node (`live` lists them all) for
    /// another connection TTL, re-creating any that Redis lost, and re-registers their
    /// users (with `lastSeen = at` only for users Redis no longer knows). Does not
    /// change `lastSeen` of known users: a heartbeat is not activity.
    ///
    /// A node calls it every [`heartbeat_interval`](Self::heartbeat_interval) (and at
    /// once when the bus reports a reconnect), so presence is right again within one
    /// heartbeat after Redis restarts empty. It also renews the node's own record,
    /// which tells the other nodes it is alive (see [`adopt_orphans`](Self::adopt_orphans)),
    /// even with no socket: a node without sockets is idle, not dead.
    pub async fn reannounce(
        &self,
        live: &[(TenantId, UserId, ConnectionId)],
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut by_user: BTreeMap<(&TenantId, &UserId), Vec<&ConnectionId>> = BTreeMap::new();
        for (tenant, user, conn) in live {
            by_user.entry((tenant, user)).or_default().push(conn);
        }
        let entries: Vec<_> = by_user.into_iter().collect();
        // Re-announcing is idempotent, and it is the repair after Redis
        // restarted: the shared connection may have died with the old server
        // since its last use, so a failed attempt (which drops that
        // connection) is made once more on a fresh one rather than waiting a
        // whole heartbeat.
        match self.reannounce_once(&entries, at).await {
            Ok(()) => Ok(()),
            Err(_) => self.reannounce_once(&entries, at).await,
        }
    }

    /// One attempt of [`reannounce`](Self::reannounce), with the live
    /// connections grouped by user.
    async fn reannounce_once(
        &self,
        entries: &[((&TenantId, &UserId), Vec<&ConnectionId>)],
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut conn = self.commands.get("presence heartbeat").await?;
        // EVALSHA in a pipeline does not fall back to EVAL: load the script first,
        // as a Redis that restarted has forgotten it.
        if !entries.is_empty() {
            self.reannounce
                .prepare_invoke()
                .load_async(&mut conn)
                .await
                .map_err(|e| unavailable("presence heartbeat: loading script", e))?;
        }
        for batch in entries.chunks(REANNOUNCE_BATCH) {
            let mut pipe = redis::pipe();
            for ((tenant, user), conns) in batch {
                pipe.cmd("EVALSHA")
                    .arg(self.reannounce.get_hash())
                    .arg(4)
                    .arg(self.conns_key(tenant, user))
                    .arg(self.users_key(tenant))
                    .arg(self.node_conns_key(&self.node))
                    .arg(self.closed_key(tenant, user))
                    .arg(user.as_str())
                    .arg(at.timestamp_micros())
                    .arg(millis(self.options.connection_ttl))
                    .arg(millis(self.options.last_seen_ttl))
                    .arg(format!("{tenant} {user} "))
                    .arg(millis(self.record_ttl()))
                    .arg(conns.iter().map(|c| c.as_str()).collect::<Vec<_>>())
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| unavailable("presence heartbeat", e))?;
        }
        self.node_alive
            .key(self.nodes_key())
            .arg(&self.node)
            .arg(millis(self.options.connection_ttl))
            .arg(millis(self.record_ttl()))
            .invoke_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable("presence heartbeat: node", e))
    }

    /// Takes over the connections of nodes that stopped without closing them (a
    /// crash, a kill): nodes whose record nobody renewed for a whole connection
    /// TTL, so their connections no longer count either. Each such node is
    /// adopted by one caller only, and forgotten. The caller tells the watchers
    /// of the users returned what their status is now (no one else will: the
    /// connections expired without a disconnect) and follows them to offline.
    ///
    /// Every node calls it on its heartbeat, after [`reannounce`](Self::reannounce).
    pub async fn adopt_orphans(&self) -> StoreResult<Orphans> {
        let mut conn = self.commands.get("presence adoption").await?;
        let (dead, members): (Vec<String>, Vec<String>) = self
            .adopt
            .key(self.nodes_key())
            .arg(format!("{}presence:node:", self.prefix))
            .arg(":conns")
            .arg(ADOPT_BATCH)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("presence adoption", e))?;
        let mut users = std::collections::BTreeSet::new();
        for member in &members {
            let mut parts = member.splitn(3, ' ');
            let parsed = match (parts.next(), parts.next()) {
                (Some(t), Some(u)) => TenantId::parse(t).ok().zip(UserId::parse(u).ok()),
                _ => None,
            };
            match parsed {
                Some(user) => {
                    users.insert(user);
                }
                None => tracing::warn!(member, "presence adoption: unreadable connection"),
            }
        }
        Ok(Orphans {
            nodes: dead.len(),
            users: users.into_iter().collect(),
        })
    }

    /// Leaves `users` to another node, for a node that stops with its sockets
    /// closed: users who left it less than ten minutes ago are still to be
    /// announced offline, and the node will not be there to do it. The next
    /// node to call [`adopt_orphans`](Self::adopt_orphans) takes them over.
    pub async fn hand_over(&self, users: &[(TenantId, UserId)]) -> StoreResult<()> {
        let mut conn = self.commands.get("presence hand-over").await?;
        self.hand_over
            .key(self.node_conns_key(&self.node))
            .key(self.nodes_key())
            .arg(&self.node)
            .arg(millis(self.record_ttl()))
            .arg(
                users
                    .iter()
                    .map(|(tenant, user)| format!("{tenant} {user} -"))
                    .collect::<Vec<_>>(),
            )
            .invoke_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable("presence hand-over", e))
    }

    /// How long a node's record outlives its last renewal: an hour, and
    /// never less than three connection TTLs (the node is adopted one TTL
    /// and a heartbeat after its last renewal).
    fn record_ttl(&self) -> Duration {
        NODE_RECORD_TTL.max(self.options.connection_ttl * 3)
    }

    fn nodes_key(&self) -> String {
        format!("{}presence:nodes", self.prefix)
    }

    fn node_conns_key(&self, node: &str) -> String {
        format!("{}presence:node:{node}:conns", self.prefix)
    }

    fn node_member(tenant: &TenantId, user: &UserId, connection: &ConnectionId) -> String {
        format!("{tenant} {user} {connection}")
    }

    fn users_key(&self, tenant: &TenantId) -> String {
        format!("{}presence:{tenant}:users", self.prefix)
    }

    fn conns_key(&self, tenant: &TenantId, user: &UserId) -> String {
        format!("{}presence:{tenant}:conns:{user}", self.prefix)
    }

    fn closed_key(&self, tenant: &TenantId, user: &UserId) -> String {
        format!("{}presence:{tenant}:closed:{user}", self.prefix)
    }

    /// Turns a script's answer into before/after records.
    fn change(user: &UserId, facts: Facts) -> StoreResult<PresenceChange> {
        let (known, before_seen, before_count, after_seen, after_count) = facts;
        let record = |seen: i64, count: i64| {
            Ok(PresenceRecord {
                user_id: user.clone(),
                connections: u32::try_from(count).unwrap_or(u32::MAX),
                last_seen: from_micros(seen)?,
            })
        };
        Ok(PresenceChange {
            before: if known == 1 {
                Some(record(before_seen, before_count)?)
            } else {
                None
            },
            after: record(after_seen, after_count)?,
        })
    }
}

impl fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPresence")
            .field("prefix", &self.prefix)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn from_micros(micros: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Unavailable(format!("redis: presence: bad lastSeen {micros}")))
}

#[async_trait]
impl PresenceTracker for RedisPresence {
    async fn connect(
        &self,
        tenant: &TenantId,
        user: &UserId,
        connection_id: &ConnectionId,
        at: DateTime<Utc>,
    ) -> StoreResult<PresenceChange> {
        let mut conn = self.commands.get("presence connect").await?;
        let facts: Facts = self
            .connect
            .key(self.conns_key(tenant, user))
            .key(self.users_key(tenant))
            .key(self.node_conns_key(&self.node))
            .key(self.nodes_key())
            .arg(user.as_str())
            .arg(connection_id.as_str())
            .arg(at.timestamp_micros())
            .arg(millis(self.options.connection_ttl))
            .arg(millis(self.options.last_seen_ttl))
            .arg(Self::node_member(tenant, user, connection_id))
            .arg(&self.node)
            .arg(millis(self.record_ttl()))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("presence connect", e))?;
        Self::change(user, facts)
    }

    async fn disconnect(
        &self,
        tenant: &TenantId,
        user: &UserId,
        connection_id: &ConnectionId,
        at: DateTime<Utc>,
    ) -> StoreResult<PresenceChange> {
        let mut conn = self.commands.get("presence disconnect").await?;
        let facts: Facts = self
            .disconnect
            .key(self.conns_key(tenant, user))
            .key(self.users_key(tenant))
            .key(self.node_conns_key(&self.node))
            .key(self.closed_key(tenant, user))
            .arg(user.as_str())
            .arg(connection_id.as_str())
            .arg(at.timestamp_micros())
            .arg(millis(self.options.last_seen_ttl))
            .arg(Self::node_member(tenant, user, connection_id))
            .arg(millis(self.options.connection_ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("presence disconnect", e))?;
        if facts.0 == 0 {
            // Never seen: ignored, and not recorded (a stray disconnect must not
            // make up a user). The answer says what is known: no connection.
            return Ok(PresenceChange {
                before: None,
                after: PresenceRecord {
                    user_id: user.clone(),
                    connections: 0,
                    last_seen: at,
                },
            });
        }
        Self::change(user, facts)
    }

    async fn touch(
        &self,
        tenant: &TenantId,
        user: &UserId,
        at: DateTime<Utc>,
    ) -> StoreResult<PresenceChange> {
        let mut conn = self.commands.get("presence touch").await?;
        let facts: Facts = self
            .touch
            .key(self.conns_key(tenant, user))
            .key(self.users_key(tenant))
            .arg(user.as_str())
            .arg(at.timestamp_micros())
            .arg(millis(self.options.last_seen_ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("presence touch", e))?;
        Self::change(user, facts)
    }

    async fn snapshot(&self, tenant: &TenantId) -> StoreResult<Vec<PresenceRecord>> {
        let mut conn = self.commands.get("presence snapshot").await?;
        let now_ms = server_millis(&mut conn).await?;
        let users: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.users_key(tenant))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable("presence snapshot: users", e))?;
        let mut records = self
            .with_connections(&mut conn, tenant, now_ms, parse_users(users)?)
            .await?;
        records.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        Ok(records)
    }

    async fn records(
        &self,
        tenant: &TenantId,
        users: &[UserId],
    ) -> StoreResult<Vec<PresenceRecord>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.commands.get("presence records").await?;
        let now_ms = server_millis(&mut conn).await?;
        let mut seen = std::collections::HashSet::with_capacity(users.len());
        let unique: Vec<&UserId> = users.iter().filter(|u| seen.insert(*u)).collect();
        let scores: Vec<Option<f64>> = redis::cmd("ZMSCORE")
            .arg(self.users_key(tenant))
            .arg(unique.iter().map(|u| u.as_str()).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable("presence records: users", e))?;
        let seen = unique
            .into_iter()
            .zip(scores)
            .filter_map(|(user, score)| score.map(|seen| (user.clone(), seen)))
            .collect();
        self.with_connections(&mut conn, tenant, now_ms, seen).await
    }
}

/// Redis's own clock in milliseconds: connection expiries are written by every
/// node against it, so it is the clock to compare them with.
async fn server_millis(conn: &mut Command) -> StoreResult<i64> {
    let (secs, micros): (i64, i64) = redis::cmd("TIME")
        .query_async(conn)
        .await
        .map_err(|e| unavailable("presence: TIME", e))?;
    Ok(secs * 1000 + micros / 1000)
}

/// The users of a tenant's users set, with their last-seen scores.
fn parse_users(users: Vec<(String, f64)>) -> StoreResult<Vec<(UserId, f64)>> {
    users
        .into_iter()
        .map(|(raw, seen)| {
            let user = UserId::parse(raw.as_str()).map_err(|e| {
                StoreError::Unavailable(format!("redis: presence: bad user id {raw:?}: {e}"))
            })?;
            Ok((user, seen))
        })
        .collect()
}
