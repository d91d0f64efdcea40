//! The command line: one subcommand per scenario, sharing the server options.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Examples (server started with `afritalk serve`, data directory ./afritalk-data):
  afritalk-bench latency    --data-dir ./afritalk-data --rate 1000 --users 1000 --duration 30s
  afritalk-bench throughput --data-dir ./afritalk-data --rate 5000 --users 4000 --duration 30s
  afritalk-bench idle       --data-dir ./afritalk-data --sockets 10000 --connect-rate 4000 \\
                            --server-pid $(pgrep -n afritalk)

The server's default per-user send limit is 30 messages per 10 s: spread the rate over
enough users (the tool warns when the per-user rate would be refused).";

/// Socket.IO load generator for a running AfriTalk server.
#[derive(Debug, Parser)]
#[command(name = "afritalk-bench", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// The scenario.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Open-loop messages at a fixed rate; send → receive latency (HDR) over every delivery.
    Latency(TrafficArgs),
    /// Same machinery, judged on whether the rate is sustained with nothing lost.
    Throughput(TrafficArgs),
    /// N idle authenticated sockets: connects/s, and the server's RSS per socket.
    Idle(IdleArgs),
}

/// Options every scenario shares.
#[derive(Debug, Args)]
pub struct Common {
    /// The server (http://host:port, or https://host:port with --ca-file).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// PEM certificate authority to trust when the server speaks TLS (an
    /// https:// URL); only it is trusted.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The tenant the benchmark users belong to.
    #[arg(long, default_value = "bench")]
    pub tenant: String,
    /// Root private key (hex) to mint tokens with.
    #[arg(long, env = "AFRITALK_ROOT_PRIVATE_KEY", hide_env_values = true)]
    pub root_key: Option<String>,
    /// The server's data directory (its root-private-key.hex mints the tokens).
    #[arg(long, env = "AFRITALK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Benchmark user ids are `{prefix}-00000`, `{prefix}-00001`, …
    #[arg(long, default_value = "bench")]
    pub user_prefix: String,
    /// Do not write the users to the directory (they exist from an earlier run).
    #[arg(long)]
    pub skip_directory: bool,
    /// Directory requests in flight.
    #[arg(long, default_value_t = 32)]
    pub setup_concurrency: usize,
    /// Socket connection attempts started per second.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Socket handshakes in flight at most.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Handshake timeout.
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub connect_timeout: Duration,
}

/// Options of `latency` and `throughput`.
#[derive(Debug, Args)]
pub struct TrafficArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Messages per second, on a fixed timetable.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Users (one socket each); user i writes to user i + users/2 (mod users).
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Measured duration (e.g. 30s, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub duration: Duration,
    /// Sent first at the same rate and not counted (creates the conversations).
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub warmup: Duration,
    /// How long after the last send a message may still arrive before it counts as lost.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub grace: Duration,
    /// Put the recipients on this second server (two-node scenario): the first
    /// half of the users send from --url, the second half receive on --recv-url.
    #[arg(long)]
    pub recv_url: Option<String>,
    /// Extra characters appended to each message's content.
    #[arg(long, default_value_t = 0)]
    pub padding: usize,
    /// The server's per-user send allowance per 10 s, only used to warn (default 30).
    #[arg(long, default_value_t = 30)]
    pub send_limit: u32,
    /// Also write every message's due time and latency to this CSV file, to
    /// see when the slow deliveries happened (they come in bursts) and line
    /// them up with the server's and Postgres's logs.
    #[arg(long)]
    pub latencies_csv: Option<std::path::PathBuf>,
    /// The server's process id (repeat for two nodes), to report its CPU time
    /// per message beside Postgres's and Redis's, which are found by name.
    #[arg(long)]
    pub server_pid: Vec<u32>,
}

/// Options of `idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Sockets to open, one per user.
    #[arg(long, default_value_t = 10_000)]
    pub sockets: usize,
    /// The server's process id, to read its RSS before and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Wait this long after the last connect before reading the RSS.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub settle: Duration,
    /// Keep the sockets open this long after the reading.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub hold: Duration,
    /// Before connecting, each user writes to this many others (over REST), so
    /// that connects look up real conversation partners (at most 30: the
    /// default send limit per 10 s).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=30))]
    pub conversations: u16,
}

/// Parses `30s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{raw}` is not a duration like 30s"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{raw}`: unit must be ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{raw}`: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
