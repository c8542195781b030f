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

/// Destination (PostgreSQL 15+): the subscription's error counters and its
/// apply worker, each row as JSON so that a column a later major renames
/// or drops is a missing field, never a failed poll.
pub(super) const HEALTH: &str = "
    SELECT (SELECT to_jsonb(x)::text FROM pg_stat_subscription_stats x WHERE x.subid = $1),
           (SELECT to_jsonb(a)::text FROM pg_stat_subscription a
             WHERE a.subid = $1 AND a.relid IS NULL LIMIT 1)";

/// Destination (PostgreSQL 14, without `pg_stat_subscription_stats`).
pub(super) const HEALTH_14: &str = "
    SELECT NULL::text,
           (SELECT to_jsonb(a)::text FROM pg_stat_subscription a
             WHERE a.subid = $1 AND a.relid IS NULL LIMIT 1)";

/// Source: the latest WAL position, the subscription's walsender (its
/// `application_name` is the subscription's name) and its slot.
/// With them, the slot's health: its row and its statistics as JSON (so
/// that columns of later majors, such as 17's `inactive_since`, are read
/// when there and missing fields otherwise), the WAL it retains, and
/// `max_slot_wal_keep_size` in bytes (-1: unlimited).
pub(super) const POSITIONS: &str = "
    SELECT pg_current_wal_lsn()::text,
           (SELECT replay_lsn::text FROM pg_stat_replication
             WHERE application_name = $1 ORDER BY backend_start LIMIT 1),
           (SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $2),
           (SELECT to_jsonb(s)::text FROM pg_replication_slots s WHERE s.slot_name = $2),
           (SELECT to_jsonb(t)::text FROM pg_stat_replication_slots t WHERE t.slot_name = $2),
           (SELECT (pg_current_wal_lsn() - restart_lsn)::bigint
              FROM pg_replication_slots WHERE slot_name = $2),
           pg_size_bytes(current_setting('max_slot_wal_keep_size'))";

/// Source: row estimates (`reltuples`, -1 when never analysed) and sizes of
/// the given tables.
pub(super) const ESTIMATES: &str = "
    SELECT n.nspname::text, c.relname::text, c.reltuples::bigint, pg_table_size(c.oid)
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN unnest($1::text[], $2::text[]) AS t(schema, name)
      ON t.schema = n.nspname AND t.name = c.relname";
