//! The hot statements keep a good plan whatever Postgres knew when it made it.
//!
//! A statement prepared once per connection soon runs on one generic plan,
//! made from what the planner believes at that moment and kept until the
//! table's statistics change. Where autovacuum is off, or before its first
//! analyze, that belief is a table of a few pages with default selectivities,
//! and a statement whose best plan depends on it keeps a young table's plan
//! (a sequential scan, or the wrong index) as the table grows to millions of
//! rows. These tests take the statement the store really ran, prepare it on a
//! young table with generic plans forced, and read its plan; and they check
//! that the store's statistics keeper analyzes the tables that changed, as
//! autovacuum would (which makes the sessions plan their statements again).
//!
//! Server: as for the contract tests (`AFRITALK_TEST_DATABASE_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use afritalk_adapter_pg::{PgStore, StatisticsKeeping, YOUNG_ROWS};
use afritalk_adapter_sql::statement_log::StatementLog;
use afritalk_contract::fixtures::{at, new_message, tenant, user, with_client_id};
use afritalk_contract::hot_paths;
use afritalk_ports::MessageStore;
use common::{admin, drop_database, new_database};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// The generic plan of `sql` (prepared with `types`, run with `args`) on the
/// database at `url`, as EXPLAIN prints it.
async fn generic_plan(url: &str, sql: &str, types: &str, args: &str) -> String {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    diesel::sql_query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query(format!("PREPARE probe({types}) AS {sql}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let lines: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN EXECUTE probe({args})"))
        .load(&mut conn)
        .await
        .unwrap();
    lines
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_delivery_probes_the_key_even_on_a_plan_made_for_a_young_table() {
    let log = StatementLog::new();
    let (name, url) = new_database(&mut admin().await).await;
    let store = PgStore::connect(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut pooled = store.pool().get().await.unwrap();
    pooled.set_instrumentation(log.recorder());
    drop(pooled);

    // One message stored, one ack: the table is a page, as in a new deployment.
    let acks = hot_paths::delivery_acks(&store, || log.take().sequence).await;
    let delivery = &acks.first[0];
    assert!(delivery.starts_with("WITH acks AS MATERIALIZED"));

    let plan = generic_plan(
        &url,
        delivery,
        "text",
        "'[{\"tenant_id\": \"acme\", \"id\": \"m\", \"recipient_id\": \"bakary\", \"at\": \"2026-01-01T00:00:00\"}]'",
    )
    .await;
    // A scan of `messages`, or an index other than the key (the recipient's
    // index ends with `id` and looks as selective), would read more rows as
    // the table grows: every ack must be one probe of the key.
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(
        plan.contains("Index Scan using messages_pkey on messages"),
        "{plan}"
    );
    assert_eq!(
        plan.matches("Index Scan").count(),
        1,
        "one index probe per ack: {plan}"
    );
    assert!(plan.contains("Tid Scan on messages m"), "{plan}");

    // And Postgres does settle on that generic plan (the store has one
    // session): a shape whose calls each look cheaper planned afresh would
    // be planned on every ack.
    for _ in 0..8 {
        hot_paths::delivery_acks(&store, Vec::new).await;
    }
    let mut session = store.pool().get().await.unwrap();
    let generic = number(
        &mut session,
        "SELECT generic_plans::float8 AS value FROM pg_prepared_statements \
         WHERE statement LIKE 'WITH acks AS MATERIALIZED%'",
    )
    .await;
    assert!(generic >= 1.0, "never ran on its generic plan");
    drop(session);

    drop(store);
    drop_database(&mut admin().await, &name).await;
}

/// Stores sends `range` of awa to bakary, each with its own client id.
async fn send_range(store: &PgStore, range: std::ops::Range<i64>) {
    let (t, a, b) = (tenant("acme"), user("awa"), user("bakary"));
    for i in range {
        let send = with_client_id(new_message(&t, &a, &b, "bonjour", at(i)), &format!("c-{i}"));
        store.send(send).await.unwrap();
    }
}

/// Waits until the sessions have reported all `sent` sends to the
/// statistics: each backend reports its counts up to ten seconds after its
/// transactions, and a count reported after an analyze would be taken for a
/// change made since.
async fn reported(conn: &mut AsyncPgConnection, sent: i64) {
    let inserted = "SELECT coalesce(min(n_tup_ins), 0)::float8 AS value FROM pg_stat_user_tables \
                    WHERE relname IN ('messages', 'notifications', 'messaging_audit_log')";
    let deadline = Instant::now() + Duration::from_secs(30);
    while number(conn, inserted).await < sent as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        number(conn, inserted).await,
        sent as f64,
        "sends not reported"
    );
}

/// Waits until `rows` directory inserts have been reported to the statistics.
async fn directory_reported(conn: &mut AsyncPgConnection, rows: u32) {
    let inserted = "SELECT n_tup_ins::float8 AS value FROM pg_stat_user_tables \
                    WHERE relname = 'directory_users'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while number(conn, inserted).await < f64::from(rows) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        number(conn, inserted).await,
        f64::from(rows),
        "inserts not reported"
    );
}

/// Runs the keeper until it analyzes `table` (sessions report their row
/// counts a moment after their transactions); what the last pass analyzed.
async fn refresh_until(store: &PgStore, table: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let analyzed = store
            .refresh_statistics(StatisticsKeeping::Always)
            .await
            .unwrap();
        if analyzed.iter().any(|t| t == table) || Instant::now() > deadline {
            return analyzed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A number read from the catalog.
#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = diesel::sql_types::Double)]
    value: f64,
}

/// The single number `sql` selects (as `value`).
async fn number(conn: &mut AsyncPgConnection, sql: &str) -> f64 {
    let row: Number = diesel::sql_query(sql).get_result(conn).await.unwrap();
    row.value
}

#[tokio::test(flavor = "multi_thread")]
async fn a_young_table_whose_file_doubled_is_analyzed_before_its_row_counts_are_reported() {
    let (name, url) = new_database(&mut admin().await).await;
    let store = PgStore::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    diesel::sql_query("ALTER TABLE messages SET (autovacuum_enabled = false)")
        .execute(&mut conn)
        .await
        .unwrap();
    // Twenty messages of 1,500 characters (stored inline, uncompressed:
    // random digits under the 2 kB toast threshold) fill more than two
    // pages, yet are fewer than the 50 changed rows autovacuum's rule
    // waits for, however soon the counts are reported.
    let (t, a, b) = (tenant("acme"), user("awa"), user("bakary"));
    for i in 0..20 {
        let content: String = (0..1_500)
            .map(|_| char::from(b'0' + rand_digit()))
            .collect();
        store
            .send(new_message(&t, &a, &b, &content, at(i)))
            .await
            .unwrap();
    }
    let pages = "SELECT (pg_relation_size('messages') / current_setting('block_size')::int)::float8 AS value";
    assert!(number(&mut conn, pages).await > 2.0);

    let analyzed = store
        .refresh_statistics(StatisticsKeeping::Always)
        .await
        .unwrap();
    assert!(analyzed.iter().any(|t| t == "messages"), "{analyzed:?}");
    // Analyzed at its size: the next analyze waits for the file to double.
    let again = store
        .refresh_statistics(StatisticsKeeping::Always)
        .await
        .unwrap();
    assert!(!again.iter().any(|t| t == "messages"), "{again:?}");
    drop(store);
    drop(conn);
    drop_database(&mut admin().await, &name).await;
}

/// A random decimal digit.
fn rand_digit() -> u8 {
    (uuid::Uuid::new_v4().as_u128() % 10) as u8
}

#[tokio::test(flavor = "multi_thread")]
async fn the_statistics_keeper_analyzes_the_tables_that_changed_at_autovacuums_pace() {
    let (name, url) = new_database(&mut admin().await).await;
    let store = PgStore::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    // The keeper is the only one to analyze here, whatever the server's
    // autovacuum setting.
    for table in [
        "messages",
        "notifications",
        "messaging_audit_log",
        "conversations",
        "directory_users",
    ] {
        diesel::sql_query(format!(
            "ALTER TABLE {table} SET (autovacuum_enabled = false)"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }

    send_range(&store, 0..80).await;
    reported(&mut conn, 80).await;
    let analyzed = refresh_until(&store, "messages").await;
    // One conversation written 80 times counts as well; the directory did
    // not change.
    for table in [
        "messages",
        "notifications",
        "messaging_audit_log",
        "conversations",
    ] {
        assert!(
            analyzed.iter().any(|t| t == table),
            "{table} changed by 80 rows, not analyzed: {analyzed:?}"
        );
    }
    assert!(
        !analyzed.iter().any(|t| t == "directory_users"),
        "{analyzed:?}"
    );
    // The planner now knows the table's size (never analyzed: -1).
    let rows = "SELECT reltuples::float8 AS value FROM pg_class WHERE relname = 'messages'";
    assert_eq!(number(&mut conn, rows).await, 80.0);
    // From a small sample: 80 distinct ids make a histogram of at most 11
    // bounds at the keeper's target of 10 (81 at the default 100).
    let bounds = "SELECT array_length(histogram_bounds::text::text[], 1)::float8 AS value \
                  FROM pg_stats WHERE tablename = 'messages' AND attname = 'id'";
    let bounds = number(&mut conn, bounds).await;
    assert!((2.0..=11.0).contains(&bounds), "{bounds} histogram bounds");
    // Nothing changed since: nothing to do.
    let again = store
        .refresh_statistics(StatisticsKeeping::Always)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");

    // 60 more rows: past the threshold (50 + 8), but the table was analyzed
    // seconds ago and has not doubled: left for later.
    send_range(&store, 80..140).await;
    reported(&mut conn, 140).await;
    let changed = "SELECT n_mod_since_analyze::float8 AS value FROM pg_stat_user_tables \
                   WHERE relname = 'messages'";
    assert_eq!(number(&mut conn, changed).await, 60.0);
    let spaced = store
        .refresh_statistics(StatisticsKeeping::Always)
        .await
        .unwrap();
    assert!(!spaced.iter().any(|t| t == "messages"), "{spaced:?}");
    // Nor is its one conversation, updated 60 times: a table that changes
    // without growing waits its minute too.
    assert!(!spaced.iter().any(|t| t == "conversations"), "{spaced:?}");

    // 30 more: the table has more than doubled since its analyze, so it is
    // young and growing fast, and analyzed again at once.
    send_range(&store, 140..170).await;
    reported(&mut conn, 170).await;
    let grown = refresh_until(&store, "messages").await;
    assert!(grown.iter().any(|t| t == "messages"), "{grown:?}");
    assert_eq!(number(&mut conn, rows).await, 170.0);

    // A table past its youth waits its minute even when it doubles: the
    // directory, filled in bulk beyond the young size and analyzed, then
    // tripled.
    let fill = |from: u32, to: u32| {
        format!(
            "INSERT INTO directory_users (tenant_id, user_id, display_name, role, active, updated_at) \
             SELECT 'acme', 'u-' || i, 'U ' || i, 'EMPLOYE', true, now() \
             FROM generate_series({from}, {to} - 1) AS i"
        )
    };
    let grown_up = YOUNG_ROWS + 200;
    diesel::sql_query(fill(0, grown_up))
        .execute(&mut conn)
        .await
        .unwrap();
    directory_reported(&mut conn, grown_up).await;
    let first = refresh_until(&store, "directory_users").await;
    assert!(first.iter().any(|t| t == "directory_users"), "{first:?}");
    diesel::sql_query(fill(grown_up, 3 * grown_up))
        .execute(&mut conn)
        .await
        .unwrap();
    directory_reported(&mut conn, 3 * grown_up).await;
    let directory_changed = "SELECT n_mod_since_analyze::float8 AS value FROM pg_stat_user_tables \
                             WHERE relname = 'directory_users'";
    assert_eq!(
        number(&mut conn, directory_changed).await,
        f64::from(2 * grown_up)
    );
    let waited = store
        .refresh_statistics(StatisticsKeeping::Always)
        .await
        .unwrap();
    assert!(!waited.iter().any(|t| t == "directory_users"), "{waited:?}");

    drop((conn, store));
    drop_database(&mut admin().await, &name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_statistics_keeper_reports_a_lost_database_as_unavailable() {
    let (name, url) = new_database(&mut admin().await).await;
    let store = PgStore::connect(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    assert!(
        store
            .refresh_statistics(StatisticsKeeping::Always)
            .await
            .is_ok()
    );

    // The database goes away under the store (its sessions are ended).
    drop_database(&mut admin().await, &name).await;
    let lost = store.refresh_statistics(StatisticsKeeping::Always).await;
    assert!(
        matches!(lost, Err(afritalk_ports::StoreError::Unavailable(_))),
        "{lost:?}"
    );
}
