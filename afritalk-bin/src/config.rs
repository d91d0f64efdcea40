//! Typed configuration, read from the environment with safe defaults: with no
//! variable set at all, the server runs on the embedded default (SQLite file and
//! key pair under `./afritalk-data`, listening on 127.0.0.1:8080).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use afritalk_http::{HttpConfig, TlsFiles};
use afritalk_ports::{RateAction, RateLimit, RateLimits};

/// A value that must never be printed (database URLs with passwords, private keys).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where messages are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// The embedded default: one SQLite file.
    Sqlite(PathBuf),
    /// Production: a Postgres URL (`postgres://…`).
    Postgres(Secret),
}

/// Everything the binary can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Holds the SQLite file and the development key pair (`AFRITALK_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Address to listen on (`AFRITALK_LISTEN`).
    pub listen: SocketAddr,
    /// Serve TLS 1.3 with this certificate chain and key (`AFRITALK_TLS_CERT` and
    /// `AFRITALK_TLS_KEY`, PEM files, both or neither; plain HTTP when unset).
    pub tls: Option<TlsFiles>,
    /// Storage backend (`DATABASE_URL`; SQLite in the data directory when unset).
    pub database: Database,
    /// Connections per storage pool (`AFRITALK_DB_POOL_SIZE`).
    pub db_pool_size: usize,
    /// Connections in the Redis command pool (`AFRITALK_REDIS_POOL_SIZE`).
    pub redis_pool_size: usize,
    /// Whether the server analyzes its Postgres tables itself while the
    /// database's autovacuum is off (`AFRITALK_PG_ANALYZE`: `auto`, the
    /// default, or `off`).
    pub pg_analyze: bool,
    /// Root private key in hex (`AFRITALK_ROOT_PRIVATE_KEY`); only `token` needs it.
    pub root_private_key: Option<Secret>,
    /// Root public key in hex (`AFRITALK_ROOT_PUBLIC_KEY`); when set, the server
    /// holds no private key at all.
    pub root_public_key: Option<String>,
    /// Allowed browser origins for the realtime handshake and for REST calls from
    /// pages (CORS) (`AFRITALK_ALLOWED_ORIGINS`, comma-separated; unset = any
    /// origin, as in the embedded default).
    pub allowed_origins: Option<Vec<String>>,
    /// Header carrying the client IP set by a trusted proxy (`AFRITALK_TRUSTED_PROXY_HEADER`).
    pub trusted_proxy_header: Option<String>,
    /// Whether tenants never configured have messaging on (`AFRITALK_MESSAGING_DEFAULT`).
    pub messaging_default_enabled: bool,
    /// Redis for shared presence, cross-node events and shared rate limits (`REDIS_URL`;
    /// in-process adapters when unset).
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key and channel (`AFRITALK_REDIS_PREFIX`, default `afritalk:`).
    pub redis_prefix: String,
    /// How long a node's socket keeps its user connected in the shared presence
    /// unless the node renews it (`AFRITALK_PRESENCE_TTL`, default 90 s, 3 s to
    /// 1 h): the longest a crashed node's users still show connected. Nodes
    /// renew every third of it.
    pub presence_ttl: Duration,
    /// Per-user limits per action (`AFRITALK_RATE_LIMITS`, e.g. `send=30/10,modify=20/60`:
    /// at most 30 sends per 10 seconds).
    pub rate_limits: RateLimits,
    /// Sizes and times the HTTP edge allows (`AFRITALK_MAX_*` and `AFRITALK_*_TIMEOUT`).
    pub edge: EdgeLimits,
    /// How long audit rows are kept, and whether `serve` purges them daily.
    pub audit: AuditRetention,
}

/// How long audit rows are kept, by `serve`'s daily purge and by
/// `afritalk audit purge` alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRetention {
    /// Keep rows this many days (`AFRITALK_AUDIT_KEEP_DAYS`, 1 to 36,500); never
    /// less than the 12 months every trail keeps. `None`: those 12 months.
    pub keep_days: Option<i64>,
    /// Whether `serve` purges once a day (`AFRITALK_AUDIT_PURGE`, `daily` by
    /// default, or `off`).
    pub purge_daily: bool,
}

/// Sizes and times allowed at the HTTP and Socket.IO edge; the defaults are
/// [`HttpConfig`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Largest REST body (`AFRITALK_MAX_BODY_BYTES`); larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest Socket.IO message (`AFRITALK_MAX_SOCKET_MESSAGE_BYTES`).
    pub max_socket_message_bytes: usize,
    /// Most sockets one user may hold open on a node
    /// (`AFRITALK_MAX_SOCKETS_PER_USER`).
    pub max_sockets_per_user: usize,
    /// Time a new connection has to send its first request's headers, TLS
    /// handshake included (`AFRITALK_FIRST_REQUEST_TIMEOUT`).
    pub first_request_timeout: Duration,
    /// Time a connection may have no request in flight
    /// (`AFRITALK_KEEP_ALIVE_TIMEOUT`).
    pub keep_alive_timeout: Duration,
    /// Time a REST body has to arrive, whole (`AFRITALK_REQUEST_BODY_TIMEOUT`).
    pub request_body_timeout: Duration,
    /// Time shutdown waits for in-flight requests (`AFRITALK_SHUTDOWN_GRACE`).
    pub shutdown_grace: Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        let http = HttpConfig::default();
        Self {
            max_body_bytes: http.max_body_bytes,
            max_socket_message_bytes: http.max_ws_message_bytes,
            max_sockets_per_user: http.max_sockets_per_user,
            first_request_timeout: http.first_request_timeout,
            keep_alive_timeout: http.keep_alive_timeout,
            request_body_timeout: http.request_body_timeout,
            shutdown_grace: http.shutdown_grace,
        }
    }
}

impl EdgeLimits {
    /// Reads the variables through `get`; unset ones keep their defaults.
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let default = Self::default();
        let bytes = |name: &'static str, default: usize, least: usize| match get(name) {
            None => Ok(default),
            Some(raw) => parse_bytes(&raw, least).map_err(|reason| ConfigError { name, reason }),
        };
        let duration = |name: &'static str, default: Duration| match get(name) {
            None => Ok(default),
            Some(raw) => parse_duration(&raw).map_err(|reason| ConfigError { name, reason }),
        };
        Ok(Self {
            max_body_bytes: bytes("AFRITALK_MAX_BODY_BYTES", default.max_body_bytes, 1024)?,
            // The socket's CONNECT packet carries the token (up to 4,096
            // characters), so a smaller cap would refuse long tokens.
            max_socket_message_bytes: bytes(
                "AFRITALK_MAX_SOCKET_MESSAGE_BYTES",
                default.max_socket_message_bytes,
                8 * 1024,
            )?,
            max_sockets_per_user: count(
                "AFRITALK_MAX_SOCKETS_PER_USER",
                get("AFRITALK_MAX_SOCKETS_PER_USER"),
                default.max_sockets_per_user,
            )?,
            first_request_timeout: duration(
                "AFRITALK_FIRST_REQUEST_TIMEOUT",
                default.first_request_timeout,
            )?,
            keep_alive_timeout: duration(
                "AFRITALK_KEEP_ALIVE_TIMEOUT",
                default.keep_alive_timeout,
            )?,
            request_body_timeout: duration(
                "AFRITALK_REQUEST_BODY_TIMEOUT",
                default.request_body_timeout,
            )?,
            shutdown_grace: duration("AFRITALK_SHUTDOWN_GRACE", default.shutdown_grace)?,
        })
    }
}

/// Largest size accepted for a body or message cap: above 16 MiB one request
/// could hold a worrying share of memory.
const MAX_BYTES: usize = 16 * 1024 * 1024;

/// Splits `raw` into its whole number and its unit (`default_unit` when none
/// is given).
fn number_and_unit<'a>(raw: &'a str, default_unit: &'a str) -> Result<(u64, &'a str), String> {
    let raw = raw.trim();
    let (number, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => raw.split_at(at),
        None => (raw, default_unit),
    };
    let number = number
        .parse::<u64>()
        .map_err(|_| format!("`{raw}` does not start with a whole number"))?;
    let unit = unit.trim();
    if unit.starts_with('.') {
        return Err(format!("`{raw}`: use a whole number in a smaller unit"));
    }
    Ok((number, unit))
}

/// Parses a size of at least `least` bytes: a number of bytes, or of `KiB`
/// or `MiB` (`65536`, `64KiB`, `1MiB`).
pub fn parse_bytes(raw: &str, least: usize) -> Result<usize, String> {
    let (number, unit) = number_and_unit(raw, "")?;
    let unit: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        other => return Err(format!("unknown unit `{other}` (use bytes, KiB or MiB)")),
    };
    number
        .checked_mul(unit)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| (least..=MAX_BYTES).contains(n))
        .ok_or_else(|| {
            format!(
                "`{}` is not a size from {} KiB to 16 MiB",
                raw.trim(),
                least / 1024
            )
        })
}

/// How long a socket counts in the shared presence unless renewed, by default.
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(90);

/// Shortest and longest `AFRITALK_PRESENCE_TTL`: nodes renew every third of it,
/// so a second between renewals is the least that survives a busy Redis; past
/// an hour a crashed node's users would show connected for too long.
const PRESENCE_TTL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(3)..=Duration::from_secs(3600);

/// Shortest and longest time accepted for a timeout or grace period.
const DURATION_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(24 * 60 * 60);

/// Parses a time: a whole number of `ms`, `s`, `m` or `h`, or of seconds when
/// no unit is given (`500ms`, `30s`, `2m`, `30`).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let (number, unit) = number_and_unit(raw, "s")?;
    let millis_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => return Err(format!("unknown unit `{other}` (use ms, s, m or h)")),
    };
    number
        .checked_mul(millis_per)
        .map(Duration::from_millis)
        .filter(|d| DURATION_RANGE.contains(d))
        .ok_or_else(|| format!("`{}` is not a time from 100ms to 24h", raw.trim()))
}

/// Parses `AFRITALK_RATE_LIMITS`: `action=max/seconds` pairs separated by commas
/// (e.g. `send=30/10,modify=20/60`); actions not named keep their defaults.
pub fn parse_rate_limits(raw: &str) -> Result<RateLimits, String> {
    let mut limits = RateLimits::default();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (action, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not action=max/seconds"))?;
        let (max, secs) = value
            .split_once('/')
            .ok_or_else(|| format!("`{value}` is not max/seconds"))?;
        let max: u32 = max
            .trim()
            .parse()
            .map_err(|_| format!("`{max}` is not a count"))?;
        let secs: u64 = secs
            .trim()
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("`{secs}` is not a positive number of seconds"))?;
        let action = match action.trim() {
            "send" => RateAction::Send,
            "modify" => RateAction::Modify,
            "receipt" => RateAction::Receipt,
            "presence" => RateAction::Presence,
            other => {
                return Err(format!(
                    "unknown action `{other}` (send, modify, receipt, presence)"
                ));
            }
        };
        limits = limits.with(action, RateLimit::new(max, Duration::from_secs(secs)));
    }
    Ok(limits)
}

/// A configuration variable that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (tests pass a map); empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let data_dir =
            PathBuf::from(get("AFRITALK_DATA_DIR").unwrap_or_else(|| "./afritalk-data".into()));
        let listen_raw = get("AFRITALK_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_raw.parse().map_err(|_| ConfigError {
            name: "AFRITALK_LISTEN",
            reason: format!("`{listen_raw}` is not an address like 127.0.0.1:8080"),
        })?;
        let tls = match (get("AFRITALK_TLS_CERT"), get("AFRITALK_TLS_KEY")) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            }),
            (Some(_), None) => {
                return Err(ConfigError {
                    name: "AFRITALK_TLS_KEY",
                    reason: "AFRITALK_TLS_CERT is set: give the certificate's key too".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    name: "AFRITALK_TLS_CERT",
                    reason: "AFRITALK_TLS_KEY is set: give the key's certificate chain too".into(),
                });
            }
        };
        let database = match get("DATABASE_URL") {
            None => Database::Sqlite(data_dir.join("afritalk.db")),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Database::Postgres(Secret::new(url))
            }
            Some(url) if url.starts_with("sqlite://") => {
                let path = url.trim_start_matches("sqlite://");
                if path.is_empty() {
                    // SQLite would open a temporary database, lost at exit.
                    return Err(ConfigError {
                        name: "DATABASE_URL",
                        reason: "sqlite:// needs a file path, e.g. sqlite:///var/lib/afritalk/afritalk.db"
                            .into(),
                    });
                }
                Database::Sqlite(PathBuf::from(path))
            }
            Some(_) => {
                return Err(ConfigError {
                    name: "DATABASE_URL",
                    reason: "must start with postgres://, postgresql:// or sqlite://".into(),
                });
            }
        };
        let db_pool_size = count("AFRITALK_DB_POOL_SIZE", get("AFRITALK_DB_POOL_SIZE"), 16)?;
        // The pool the Redis adapters take their shared connections from (one
        // each, replaced after a failure): its size matters only while many
        // calls reconnect at once.
        let redis_pool_size = count(
            "AFRITALK_REDIS_POOL_SIZE",
            get("AFRITALK_REDIS_POOL_SIZE"),
            64,
        )?;
        let pg_analyze = match get("AFRITALK_PG_ANALYZE").as_deref() {
            None | Some("auto") => true,
            Some("off") => false,
            Some(_) => {
                return Err(ConfigError {
                    name: "AFRITALK_PG_ANALYZE",
                    reason: "must be auto or off".into(),
                });
            }
        };
        let messaging_default_enabled = match get("AFRITALK_MESSAGING_DEFAULT").as_deref() {
            None | Some("enabled") | Some("true") | Some("on") => true,
            Some("disabled") | Some("false") | Some("off") => false,
            Some(_) => {
                return Err(ConfigError {
                    name: "AFRITALK_MESSAGING_DEFAULT",
                    reason: "must be enabled or disabled".into(),
                });
            }
        };
        let keep_days = match get("AFRITALK_AUDIT_KEEP_DAYS") {
            None => None,
            Some(raw) => Some(
                raw.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|days| (1..=36_500).contains(days))
                    .ok_or_else(|| ConfigError {
                        name: "AFRITALK_AUDIT_KEEP_DAYS",
                        reason: "must be a number of days from 1 to 36500".into(),
                    })?,
            ),
        };
        let purge_daily = match get("AFRITALK_AUDIT_PURGE").as_deref() {
            None | Some("daily") | Some("on") => true,
            Some("off") => false,
            Some(_) => {
                return Err(ConfigError {
                    name: "AFRITALK_AUDIT_PURGE",
                    reason: "must be daily or off".into(),
                });
            }
        };
        let presence_ttl = match get("AFRITALK_PRESENCE_TTL") {
            None => DEFAULT_PRESENCE_TTL,
            Some(raw) => parse_duration(&raw)
                .and_then(|ttl| {
                    if PRESENCE_TTL_RANGE.contains(&ttl) {
                        Ok(ttl)
                    } else {
                        Err(format!("`{}` is not a time from 3s to 1h", raw.trim()))
                    }
                })
                .map_err(|reason| ConfigError {
                    name: "AFRITALK_PRESENCE_TTL",
                    reason,
                })?,
        };
        let allowed_origins = get("AFRITALK_ALLOWED_ORIGINS").map(|raw| {
            raw.split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect()
        });
        Ok(Self {
            data_dir,
            listen,
            tls,
            database,
            db_pool_size,
            redis_pool_size,
            pg_analyze,
            root_private_key: get("AFRITALK_ROOT_PRIVATE_KEY").map(Secret::new),
            root_public_key: get("AFRITALK_ROOT_PUBLIC_KEY"),
            allowed_origins,
            trusted_proxy_header: get("AFRITALK_TRUSTED_PROXY_HEADER"),
            messaging_default_enabled,
            redis_url: get("REDIS_URL").map(Secret::new),
            redis_prefix: get("AFRITALK_REDIS_PREFIX").unwrap_or_else(|| "afritalk:".into()),
            presence_ttl,
            rate_limits: match get("AFRITALK_RATE_LIMITS") {
                None => RateLimits::default(),
                Some(raw) => parse_rate_limits(&raw).map_err(|reason| ConfigError {
                    name: "AFRITALK_RATE_LIMITS",
                    reason,
                })?,
            },
            edge: EdgeLimits::from_lookup(get)?,
            audit: AuditRetention {
                keep_days,
                purge_daily,
            },
        })
    }
}

/// A count from 1 to 1024 (a pool size, a cap) from variable `name` (`raw`),
/// `default` when unset.
fn count(name: &'static str, raw: Option<String>, default: usize) -> Result<usize, ConfigError> {
    match raw {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| ConfigError {
                name,
                reason: "must be a number from 1 to 1024".into(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn no_configuration_means_the_embedded_default() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.pg_analyze);
        assert_eq!(
            c.database,
            Database::Sqlite(PathBuf::from("./afritalk-data/afritalk.db"))
        );
        assert!(c.messaging_default_enabled);
        assert_eq!(c.allowed_origins, None);
    }

    #[test]
    fn a_postgres_url_switches_the_backend_and_never_prints() {
        let c = config(&[("DATABASE_URL", "postgres://u:hunter2@db/afritalk")]).unwrap();
        assert!(matches!(c.database, Database::Postgres(_)));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn the_presence_ttl_defaults_to_90_seconds_and_stays_within_3s_to_1h() {
        assert_eq!(config(&[]).unwrap().presence_ttl, Duration::from_secs(90));
        let c = config(&[("AFRITALK_PRESENCE_TTL", "3s")]).unwrap();
        assert_eq!(c.presence_ttl, Duration::from_secs(3));
        let c = config(&[("AFRITALK_PRESENCE_TTL", "1h")]).unwrap();
        assert_eq!(c.presence_ttl, Duration::from_secs(3600));
        for bad in ["2999ms", "61m", "soon", "0"] {
            let err = config(&[("AFRITALK_PRESENCE_TTL", bad)]).unwrap_err();
            assert_eq!(err.name, "AFRITALK_PRESENCE_TTL", "{bad}");
        }
    }

    #[test]
    fn edge_limits_default_to_the_gateway_s_and_take_units() {
        assert_eq!(config(&[]).unwrap().edge, EdgeLimits::default());
        assert_eq!(
            EdgeLimits::default().keep_alive_timeout,
            Duration::from_secs(75)
        );
        let c = config(&[
            ("AFRITALK_MAX_BODY_BYTES", "1MiB"),
            ("AFRITALK_MAX_SOCKET_MESSAGE_BYTES", "8192"),
            ("AFRITALK_MAX_SOCKETS_PER_USER", "4"),
            ("AFRITALK_FIRST_REQUEST_TIMEOUT", "500ms"),
            ("AFRITALK_KEEP_ALIVE_TIMEOUT", "2m"),
            ("AFRITALK_REQUEST_BODY_TIMEOUT", "45"),
            ("AFRITALK_SHUTDOWN_GRACE", "1h"),
        ])
        .unwrap();
        assert_eq!(
            c.edge,
            EdgeLimits {
                max_body_bytes: 1024 * 1024,
                max_socket_message_bytes: 8192,
                max_sockets_per_user: 4,
                first_request_timeout: Duration::from_millis(500),
                keep_alive_timeout: Duration::from_secs(120),
                request_body_timeout: Duration::from_secs(45),
                shutdown_grace: Duration::from_secs(3600),
            }
        );
        for (name, bad) in [
            ("AFRITALK_MAX_BODY_BYTES", "64KB"),
            ("AFRITALK_MAX_BODY_BYTES", "100"),
            ("AFRITALK_MAX_SOCKET_MESSAGE_BYTES", "17MiB"),
            ("AFRITALK_MAX_SOCKET_MESSAGE_BYTES", "4KiB"),
            ("AFRITALK_KEEP_ALIVE_TIMEOUT", "1.5s"),
            (
                "AFRITALK_MAX_SOCKET_MESSAGE_BYTES",
                "99999999999999999999999",
            ),
            ("AFRITALK_FIRST_REQUEST_TIMEOUT", "0"),
            ("AFRITALK_MAX_SOCKETS_PER_USER", "0"),
            ("AFRITALK_MAX_SOCKETS_PER_USER", "1025"),
            ("AFRITALK_KEEP_ALIVE_TIMEOUT", "10 minutes"),
            ("AFRITALK_REQUEST_BODY_TIMEOUT", "-5s"),
            ("AFRITALK_SHUTDOWN_GRACE", "25h"),
        ] {
            assert_eq!(config(&[(name, bad)]).unwrap_err().name, name, "{bad}");
        }
    }

    #[test]
    fn the_audit_purge_runs_daily_unless_off_and_keeps_what_it_is_told() {
        let retention = |vars: &[(&str, &str)]| config(vars).unwrap().audit;
        let daily = AuditRetention {
            keep_days: None,
            purge_daily: true,
        };
        assert_eq!(retention(&[]), daily);
        assert_eq!(retention(&[("AFRITALK_AUDIT_PURGE", "daily")]), daily);
        assert_eq!(
            retention(&[("AFRITALK_AUDIT_PURGE", "off")]),
            AuditRetention {
                purge_daily: false,
                ..daily
            }
        );
        assert_eq!(
            retention(&[("AFRITALK_AUDIT_KEEP_DAYS", "730")]),
            AuditRetention {
                keep_days: Some(730),
                ..daily
            }
        );
        for (name, bad) in [
            ("AFRITALK_AUDIT_PURGE", "weekly"),
            ("AFRITALK_AUDIT_KEEP_DAYS", "0"),
            ("AFRITALK_AUDIT_KEEP_DAYS", "36501"),
            ("AFRITALK_AUDIT_KEEP_DAYS", "a year"),
        ] {
            assert_eq!(config(&[(name, bad)]).unwrap_err().name, name, "{bad}");
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert_eq!(
            config(&[("AFRITALK_LISTEN", "nope")]).unwrap_err().name,
            "AFRITALK_LISTEN"
        );
        assert_eq!(
            config(&[("DATABASE_URL", "mysql://x")]).unwrap_err().name,
            "DATABASE_URL"
        );
        assert_eq!(
            config(&[("DATABASE_URL", "sqlite://")]).unwrap_err().name,
            "DATABASE_URL"
        );
        assert_eq!(
            config(&[("AFRITALK_DB_POOL_SIZE", "0")]).unwrap_err().name,
            "AFRITALK_DB_POOL_SIZE"
        );
        assert_eq!(
            config(&[("AFRITALK_PG_ANALYZE", "sometimes")])
                .unwrap_err()
                .name,
            "AFRITALK_PG_ANALYZE"
        );
        assert_eq!(
            config(&[("AFRITALK_REDIS_POOL_SIZE", "lots")])
                .unwrap_err()
                .name,
            "AFRITALK_REDIS_POOL_SIZE"
        );
    }

    #[test]
    fn rate_limits_parse_per_action_and_refuse_nonsense() {
        let c = config(&[("AFRITALK_RATE_LIMITS", "send=100/5, presence=10/60")]).unwrap();
        assert_eq!(
            c.rate_limits.send,
            RateLimit::new(100, Duration::from_secs(5))
        );
        assert_eq!(
            c.rate_limits.presence,
            RateLimit::new(10, Duration::from_secs(60))
        );
        assert_eq!(c.rate_limits.modify, RateLimits::default().modify);
        for bad in ["send=1", "send=x/5", "send=1/0", "shout=1/1"] {
            assert_eq!(
                config(&[("AFRITALK_RATE_LIMITS", bad)]).unwrap_err().name,
                "AFRITALK_RATE_LIMITS",
                "{bad}"
            );
        }
    }

    #[test]
    fn tls_needs_both_files() {
        let c = config(&[
            ("AFRITALK_TLS_CERT", "/etc/afritalk/chain.pem"),
            ("AFRITALK_TLS_KEY", "/etc/afritalk/key.pem"),
        ])
        .unwrap();
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: PathBuf::from("/etc/afritalk/chain.pem"),
                key: PathBuf::from("/etc/afritalk/key.pem"),
            })
        );
        assert_eq!(config(&[]).unwrap().tls, None);
        assert_eq!(
            config(&[("AFRITALK_TLS_CERT", "chain.pem")])
                .unwrap_err()
                .name,
            "AFRITALK_TLS_KEY"
        );
        assert_eq!(
            config(&[("AFRITALK_TLS_KEY", "key.pem")]).unwrap_err().name,
            "AFRITALK_TLS_CERT"
        );
    }

    #[test]
    fn origins_are_a_trimmed_list() {
        let c = config(&[(
            "AFRITALK_ALLOWED_ORIGINS",
            "https://a.example/, https://b.example",
        )])
        .unwrap();
        assert_eq!(
            c.allowed_origins.unwrap(),
            vec![
                "https://a.example".to_string(),
                "https://b.example".to_string()
            ]
        );
    }
}
