//! A set of migrations' snapshots as one OTLP metrics request: every
//! family of [`crate::metrics`], under its OTLP name and unit, each point
//! with its migration's labels as attributes.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::metrics::{FAMILIES, Member, ProcessCounter, Value};

/// When the points of one export were taken, in nanoseconds since the Unix
/// epoch: `now`, and `start`, when the process began counting (the start
/// of every cumulative sum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) start: u64,
    pub(crate) now: u64,
}

/// The request carrying every series of `members` and the process's own
/// `counters`, from the process described by `resource` (`key`, `value`
/// pairs).
pub(crate) fn request(
    members: &[Member],
    counters: &[ProcessCounter],
    resource: &[(String, String)],
    times: Times,
) -> ExportMetricsServiceRequest {
    let mut metrics: Vec<Metric> = FAMILIES
        .iter()
        .filter(|family| family.is_present(members))
        .map(|family| {
            let mut points = Vec::new();
            for member in members {
                family.each(member, |labels, value| {
                    let attributes = member
                        .labels
                        .iter()
                        .map(|(key, value)| attribute(key, value))
                        .chain(labels.iter().map(|(key, value)| attribute(key, value)))
                        .collect();
                    let (start, value) = match value {
                        Value::Gauge(v) => (0, number_data_point::Value::AsDouble(v)),
                        Value::Counter(v) => (
                            times.start,
                            number_data_point::Value::AsInt(i64::try_from(v).unwrap_or(i64::MAX)),
                        ),
                    };
                    points.push(NumberDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: times.now,
                        value: Some(value),
                        ..NumberDataPoint::default()
                    });
                });
            }
            let data = match family.is_counter() {
                true => metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
                false => metric::Data::Gauge(Gauge {
                    data_points: points,
                }),
            };
            Metric {
                name: family.otlp_name(),
                description: family.help.to_owned(),
                unit: family.unit.to_owned(),
                data: Some(data),
                ..Metric::default()
            }
        })
        .collect();
    // The process's own counts, without a migration.
    metrics.extend(counters.iter().map(|counter| Metric {
        name: counter.otlp_name(),
        description: counter.help().to_owned(),
        unit: counter.unit().to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                start_time_unix_nano: times.start,
                time_unix_nano: times.now,
                value: Some(number_data_point::Value::AsInt(
                    i64::try_from(counter.get()).unwrap_or(i64::MAX),
                )),
                ..NumberDataPoint::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Metric::default()
    }));
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.iter().map(|(k, v)| attribute(k, v)).collect(),
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: env!("CARGO_PKG_NAME").to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message;

    use super::*;
    use crate::metrics::members;
    use crate::model::{Snapshot, TableProgress};

    fn attributes(point: &NumberDataPoint) -> Vec<(String, String)> {
        point
            .attributes
            .iter()
            .map(|kv| {
                let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => panic!("{other:?}"),
                };
                (kv.key.clone(), value)
            })
            .collect()
    }

    #[test]
    fn every_series_of_every_migration_goes_under_its_otlp_name_unit_and_attributes() {
        let mut users = TableProgress::new("public", "users", 10, 4096);
        users.changes_applied = 7;
        let shop = Arc::new(Snapshot {
            lag_bytes: 10,
            total_rows: 5,
            tables: vec![users],
            ..Snapshot::default()
        });
        let billing = Arc::new(Snapshot {
            lag_bytes: 20,
            ..Snapshot::default()
        });
        let members = members(
            vec![
                (Some("shop".into()), shop),
                (Some("billing".into()), billing),
            ],
            None,
        );
        let resource = [("service.name".to_owned(), "pgmigrator".to_owned())];
        let times = Times { start: 1, now: 2 };
        let failures = ProcessCounter::new("otlp_export_failures", "Pushes given up", "{push}");
        (0..3).for_each(|_| failures.increment());
        let wire = request(&members, &[failures], &resource, times).encode_to_vec();
        let decoded = ExportMetricsServiceRequest::decode(wire.as_slice()).unwrap();
        let [resource_metrics] = decoded.resource_metrics.as_slice() else {
            panic!("one resource");
        };
        let attrs = &resource_metrics.resource.as_ref().unwrap().attributes;
        assert_eq!(attrs[0].key, "service.name");
        let metrics = &resource_metrics.scope_metrics[0].metrics;
        let find = |name: &str| metrics.iter().find(|m| m.name == name).unwrap();
        let lag = find("pgmigrator_replication_lag_bytes");
        assert_eq!(lag.unit, "By");
        let Some(metric::Data::Gauge(gauge)) = &lag.data else {
            panic!("{lag:?}");
        };
        type Point = (Vec<(String, String)>, Option<number_data_point::Value>);
        let values: Vec<Point> = gauge
            .data_points
            .iter()
            .map(|p| (attributes(p), p.value))
            .collect();
        let at = |id: &str| vec![("migration".to_owned(), id.to_owned())];
        assert_eq!(
            values,
            [
                (at("shop"), Some(number_data_point::Value::AsDouble(10.0))),
                (
                    at("billing"),
                    Some(number_data_point::Value::AsDouble(20.0))
                ),
            ]
        );
        assert!(gauge.data_points.iter().all(|p| p.time_unix_nano == 2));
        // A counter is a cumulative monotonic sum from the start, per table
        // where it is one.
        let changes = find("pgmigrator_table_changes_applied");
        let Some(metric::Data::Sum(sum)) = &changes.data else {
            panic!("{changes:?}");
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let [point] = sum.data_points.as_slice() else {
            panic!("one table");
        };
        assert_eq!(
            attributes(point),
            [
                ("migration", "shop"),
                ("schema", "public"),
                ("table", "users")
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(
            (point.start_time_unix_nano, point.value),
            (1, Some(number_data_point::Value::AsInt(7)))
        );
        assert_eq!(find("pgmigrator_rows").unit, "{row}/s");
        assert!(metrics.iter().all(|m| !m.description.is_empty()));
        let failures = find("pgmigrator_otlp_export_failures");
        let Some(metric::Data::Sum(sum)) = &failures.data else {
            panic!("{failures:?}");
        };
        let point = &sum.data_points[0];
        assert!(
            point.attributes.is_empty(),
            "the process's, not a migration's"
        );
        assert_eq!(point.value, Some(number_data_point::Value::AsInt(3)));
        assert_eq!(failures.unit, "{push}");
        // Families no migration has a series of are left out.
        assert!(
            !metrics
                .iter()
                .any(|m| m.name.starts_with("pgmigrator_slot_"))
        );
    }
}
