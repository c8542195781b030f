use super::*;
use crate::pg::catalog::Publication;

fn column(name: &str, type_name: &str, not_null: bool) -> Column {
    Column(name.into(), type_name.into(), not_null)
}

fn table(name: &str, publications: &[&str]) -> SourceTable {
    SourceTable {
        name: TableName::new("public", name),
        kind: "r".into(),
        replica_identity: "d".into(),
        has_primary_key: true,
        has_replica_identity_index: false,
        publications: publications.iter().map(|p| p.to_string()).collect(),
        root_publications: vec![],
        columns: vec![column("id", "bigint", true)],
    }
}

fn sequence(name: &str, last_value: Option<i64>) -> Sequence {
    Sequence {
        name: TableName::new("public", name),
        increment: 1,
        readable: true,
        last_value,
        bounds: (1, i64::MAX),
    }
}

/// A streaming subscription to a `FOR ALL TABLES` publication of one
/// table, its sequence level on both sides.
fn ready() -> Catalog {
    Catalog {
        subscription: "sub".into(),
        enabled: true,
        subscribed_publications: vec!["pub".into()],
        subscribed: vec![(
            TableName::new("public", "orders"),
            vec![column("id", "bigint", true)],
        )],
        publications: vec![Publication {
            name: "pub".into(),
            all_tables: true,
            updates_or_deletes: true,
        }],
        source_tables: vec![table("orders", &["pub"])],
        source_sequences: vec![sequence("orders_id_seq", Some(10))],
        dest_sequences: vec![sequence("orders_id_seq", Some(10))],
    }
}

fn blockers(catalog: &Catalog) -> Vec<(CutoverKind, Option<String>, String)> {
    evaluate(catalog, 1000)
        .blockers
        .into_iter()
        .map(|b| (b.kind, b.table, b.detail))
        .collect()
}

#[test]
fn a_streaming_subscription_with_level_sequences_has_no_finding() {
    assert_eq!(evaluate(&ready(), 1000), Findings::default());
}

#[test]
fn a_disabled_subscription_blocks() {
    let mut catalog = ready();
    catalog.enabled = false;
    let found = blockers(&catalog);
    assert_eq!(found[0].0, CutoverKind::SubscriptionDisabled);
    assert!(found[0].2.contains("subscription sub is disabled"));
}

#[test]
fn a_published_table_missing_from_the_subscription_blocks() {
    let mut catalog = ready();
    catalog.source_tables.push(table("late", &["pub"]));
    let found = blockers(&catalog);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, CutoverKind::NotSubscribed);
    assert_eq!(found[0].1.as_deref(), Some("public.late"));
    assert!(found[0].2.contains("REFRESH PUBLICATION"), "{}", found[0].2);
}

#[test]
fn a_table_in_no_publication_is_a_warning_only_beside_a_table_list() {
    let mut catalog = ready();
    catalog.source_tables.push(table("audit", &[]));
    catalog.source_tables.push(table("elsewhere", &[]));
    catalog.source_tables[2].name.schema = "other".into();
    assert!(
        evaluate(&catalog, 1000).warnings.is_empty(),
        "FOR ALL TABLES covers every table"
    );
    catalog.publications[0].all_tables = false;
    let findings = evaluate(&catalog, 1000);
    assert!(findings.blockers.is_empty());
    assert_eq!(findings.warnings.len(), 1, "{:?}", findings.warnings);
    assert_eq!(findings.warnings[0].kind, CutoverKind::NotSubscribed);
    assert_eq!(
        findings.warnings[0].table.as_deref(),
        Some("public.audit"),
        "only schemas that have published tables"
    );
}

#[test]
fn a_partition_published_through_its_root_is_in_a_publication() {
    let mut catalog = ready();
    catalog.publications[0].all_tables = false;
    let mut leaf = table("events_2026", &[]);
    leaf.root_publications = vec!["pub".into()];
    leaf.has_primary_key = false;
    catalog.source_tables.push(leaf);
    let findings = evaluate(&catalog, 1000);
    assert!(findings.warnings.is_empty(), "{:?}", findings.warnings);
    assert_eq!(
        findings.blockers[0].kind,
        CutoverKind::NoReplicaIdentity,
        "the leaf takes the UPDATEs"
    );
}

#[test]
fn a_missing_publication_blocks() {
    let mut catalog = ready();
    catalog.subscribed_publications.push("gone".into());
    let found = blockers(&catalog);
    assert_eq!(found[0].0, CutoverKind::NotSubscribed);
    assert!(found[0].2.contains("publication gone does not exist"));
}

#[test]
fn tables_without_a_replica_identity_block_when_updates_are_published() {
    let mut catalog = ready();
    catalog.source_tables[0].has_primary_key = false;
    let found = blockers(&catalog);
    assert_eq!(found[0].0, CutoverKind::NoReplicaIdentity);
    assert!(
        found[0]
            .2
            .starts_with("no primary key and REPLICA IDENTITY DEFAULT")
    );

    catalog.source_tables[0].replica_identity = "f".into();
    assert!(blockers(&catalog).is_empty(), "FULL is an identity");
    catalog.source_tables[0].replica_identity = "i".into();
    assert_eq!(blockers(&catalog)[0].0, CutoverKind::NoReplicaIdentity);
    catalog.source_tables[0].has_replica_identity_index = true;
    assert!(blockers(&catalog).is_empty());

    catalog.source_tables[0].replica_identity = "n".into();
    assert_eq!(blockers(&catalog)[0].0, CutoverKind::NoReplicaIdentity);
    catalog.publications[0].updates_or_deletes = false;
    assert!(blockers(&catalog).is_empty(), "inserts need no identity");
}

#[test]
fn column_differences_are_named() {
    let mut catalog = ready();
    catalog.source_tables[0].columns = vec![
        column("id", "bigint", true),
        column("qty", "integer", false),
        column("sku", "text", false),
        column("gone", "text", false),
    ];
    catalog.subscribed[0].1 = vec![
        column("id", "bigint", true),
        column("qty", "bigint", false),
        column("sku", "text", true),
        column("note", "text", false),
    ];
    let found = blockers(&catalog);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, CutoverKind::SchemaMismatch);
    assert_eq!(
        found[0].2,
        "column qty is integer on the source, bigint on the destination; \
         column sku is NOT NULL on the destination only; \
         column gone only on the source; \
         column note only on the destination"
    );
}

#[test]
fn a_subscribed_table_the_source_lacks_is_a_mismatch() {
    let mut catalog = ready();
    catalog.source_tables.clear();
    assert_eq!(blockers(&catalog)[0].0, CutoverKind::SchemaMismatch);
}

#[test]
fn sequences_behind_block_and_come_with_a_fix() {
    let mut catalog = ready();
    catalog.source_sequences[0].last_value = Some(120_045);
    catalog.dest_sequences[0].last_value = None;
    let findings = evaluate(&catalog, 1000);
    assert_eq!(findings.blockers[0].kind, CutoverKind::SequenceBehind);
    assert_eq!(
        findings.blockers[0].table.as_deref(),
        Some("public.orders_id_seq")
    );
    assert_eq!(
        findings.blockers[0].detail,
        "source 120045, destination unused"
    );
    assert_eq!(
        findings.sequence_fixes[0].sql(),
        r#"SELECT setval(E'"public"."orders_id_seq"', 121045, true);"#
    );

    catalog.dest_sequences[0].last_value = Some(1);
    assert_eq!(
        evaluate(&catalog, 1000).blockers[0].detail,
        "source 120045, destination 1"
    );
    catalog.dest_sequences[0].last_value = Some(120_045);
    assert!(blockers(&catalog).is_empty(), "level is enough");

    // A descending sequence is behind when it is above the source.
    for s in [
        &mut catalog.source_sequences[0],
        &mut catalog.dest_sequences[0],
    ] {
        s.increment = -1;
        s.bounds = (i64::MIN, -1);
    }
    catalog.source_sequences[0].last_value = Some(-50);
    catalog.dest_sequences[0].last_value = Some(-10);
    let findings = evaluate(&catalog, 1000);
    assert_eq!(findings.sequence_fixes[0].value, -1050);
    catalog.source_sequences[0].last_value = Some(i64::MIN + 5);
    assert_eq!(
        evaluate(&catalog, 1000).sequence_fixes[0].value,
        i64::MIN,
        "no overflow"
    );
}

#[test]
fn unused_unreadable_and_missing_sequences() {
    let mut catalog = ready();
    catalog.source_sequences[0].last_value = None;
    catalog.dest_sequences[0].last_value = None;
    assert!(blockers(&catalog).is_empty(), "never used on the source");

    catalog.source_sequences[0].last_value = Some(5);
    catalog.dest_sequences.clear();
    assert!(blockers(&catalog)[0].2.contains("no such sequence"));

    let mut catalog = ready();
    catalog.source_sequences[0].readable = false;
    catalog.source_sequences[0].last_value = None;
    let findings = evaluate(&catalog, 1000);
    assert!(findings.blockers.is_empty());
    assert!(
        findings.warnings[0]
            .detail
            .starts_with("1 sequence(s) not compared (first: public.orders_id_seq)"),
        "{}",
        findings.warnings[0].detail
    );
}

#[test]
fn a_fix_stays_within_the_destination_sequences_bounds_and_says_so() {
    let mut catalog = ready();
    // MAXVALUE 5500 at 5000: 500 of the 1000 margin.
    catalog.source_sequences[0].last_value = Some(5000);
    catalog.dest_sequences[0].last_value = None;
    catalog.dest_sequences[0].bounds = (1, 5500);
    let fix = &evaluate(&catalog, 1000).sequence_fixes[0];
    assert_eq!((fix.value, fix.clamped), (5500, true));
    // AS integer near 2^31.
    catalog.source_sequences[0].last_value = Some(2_147_483_000);
    catalog.dest_sequences[0].bounds = (1, i64::from(i32::MAX));
    let fix = &evaluate(&catalog, 1000).sequence_fixes[0];
    assert_eq!((fix.value, fix.clamped), (i64::from(i32::MAX), true));
    // A bound below the source's value: no statement can help.
    catalog.source_sequences[0].last_value = Some(9000);
    catalog.dest_sequences[0].bounds = (1, 5500);
    let findings = evaluate(&catalog, 1000);
    assert!(findings.sequence_fixes.is_empty());
    assert!(
        findings.blockers[0].detail.contains("bounds (1 to 5500)"),
        "{}",
        findings.blockers[0].detail
    );
    // A descending sequence stops at its MINVALUE.
    for s in [
        &mut catalog.source_sequences[0],
        &mut catalog.dest_sequences[0],
    ] {
        s.increment = -1;
    }
    catalog.source_sequences[0].last_value = Some(-95);
    catalog.dest_sequences[0].bounds = (-100, -1);
    let fix = &evaluate(&catalog, 1000).sequence_fixes[0];
    assert_eq!((fix.value, fix.clamped), (-100, true));
}

#[test]
fn odd_sequence_names_print_as_safe_sql() {
    let fix = SequenceFix {
        sequence: TableName::new("we\"ird", "s'q\x1b[2J"),
        value: 7,
        clamped: false,
    };
    assert_eq!(
        fix.sql(),
        r#"SELECT setval(E'"we""ird"."s''q\u001B[2J"', 7, true);"#
    );
}
