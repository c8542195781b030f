//! The monitor's queries: a fixed few per poll, whatever the table count.

/// `ident` as a quoted SQL identifier: `"my ""odd"" name"`.
pub(super) fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

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

/// Destination: whether the subscription is enabled, and its publications.
pub(super) const SUBSCRIPTION_STATE: &str = "
    SELECT s.subenabled, s.subpublications::text[]
    FROM pg_subscription s WHERE s.oid = $1";

/// The columns of table `c`, as a JSON array of `[name, type, not null]`.
macro_rules! columns_json {
    () => {
        "(SELECT json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull)
                          ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)::text"
    };
}

/// Destination: the subscription's tables with their columns.
pub(super) const SUBSCRIBED_COLUMNS: &str = concat!(
    "
    SELECT n.nspname::text, c.relname::text, ",
    columns_json!(),
    "
    FROM pg_subscription_rel sr
    JOIN pg_class c ON c.oid = sr.srrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE sr.srsubid = $1"
);

/// Source: every publication and whether it publishes UPDATE or DELETE
/// (which need a replica identity).
pub(super) const PUBLICATIONS: &str = "
    SELECT p.pubname::text, p.puballtables, p.pubupdate OR p.pubdelete
    FROM pg_publication p";

/// Source: every table in a user schema (plain and partitioned) with its
/// replica identity, its keys, the publications that list it and, for a
/// partition, those that list its root, and its columns.
pub(super) const SOURCE_TABLES: &str = concat!(
    "
    WITH listed AS (
        SELECT c.oid, array_agg(DISTINCT pt.pubname::text) AS pubs
        FROM pg_publication_tables pt
        JOIN pg_namespace n ON n.nspname = pt.schemaname
        JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
        GROUP BY c.oid)
    SELECT n.nspname::text, c.relname::text, c.relkind::text, c.relreplident::text,
           EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
           EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident),
           COALESCE(l.pubs, '{}'), COALESCE(r.pubs, '{}'), ",
    columns_json!(),
    "
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN listed l ON l.oid = c.oid
    LEFT JOIN listed r ON c.relispartition AND r.oid = pg_partition_root(c.oid)
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname <> 'information_schema' AND NOT starts_with(n.nspname, 'pg_')"
);

/// Either side: every sequence in a user schema, its increment, whether
/// this login may read it, its `last_value` (NULL before its first
/// `nextval`, or when it may not be read), and its bounds.
pub(super) const SEQUENCES: &str = "
    SELECT n.nspname::text, c.relname::text, s.seqincrement,
           has_sequence_privilege(c.oid, 'SELECT,USAGE'),
           CASE WHEN has_sequence_privilege(c.oid, 'SELECT,USAGE')
                THEN pg_sequence_last_value(c.oid) END,
           s.seqmin, s.seqmax
    FROM pg_sequence s
    JOIN pg_class c ON c.oid = s.seqrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname <> 'information_schema' AND NOT starts_with(n.nspname, 'pg_')";
