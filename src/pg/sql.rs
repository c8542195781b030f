//! The monitor's queries: a fixed few per poll, whatever the table count.

/// Destination: subscriptions of the current database.
pub(super) const SUBSCRIPTIONS: &str = "
    SELECT s.oid, s.subname::text, s.subslotname::text
    FROM pg_subscription s
    WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY s.subname";

/// Destination: every table of the subscription with its state, its COPY
/// progress while a tablesync worker copies it, and its change counters.
pub(super) const TABLES: &str = "
    SELECT n.nspname::text, c.relname::text, sr.srsubstate::text,
           p.tuples_processed, p.bytes_processed,
           COALESCE(u.n_tup_ins, 0), COALESCE(u.n_tup_ins + u.n_tup_upd + u.n_tup_del, 0)
    FROM pg_subscription_rel sr
    JOIN pg_class c ON c.oid = sr.srrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_stat_progress_copy p ON p.relid = c.oid AND p.command = 'COPY FROM'
    LEFT JOIN pg_stat_user_tables u ON u.relid = c.oid
    WHERE sr.srsubid = $1";

/// Destination (PostgreSQL 15+): the subscription's error counters.
pub(super) const ERRORS: &str = "
    SELECT apply_error_count, sync_error_count
    FROM pg_stat_subscription_stats WHERE subid = $1";

/// Source: the latest WAL position, the subscription's walsender (its
/// `application_name` is the subscription's name) and its slot.
pub(super) const POSITIONS: &str = "
    SELECT pg_current_wal_lsn()::text,
           (SELECT replay_lsn::text FROM pg_stat_replication
             WHERE application_name = $1 ORDER BY backend_start LIMIT 1),
           (SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $2)";

/// Source: row estimates (`reltuples`, -1 when never analysed) and sizes of
/// the given tables.
pub(super) const ESTIMATES: &str = "
    SELECT n.nspname::text, c.relname::text, c.reltuples::bigint, pg_table_size(c.oid)
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN unnest($1::text[], $2::text[]) AS t(schema, name)
      ON t.schema = n.nspname AND t.name = c.relname";
