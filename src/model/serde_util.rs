//! How our JSON reads what the Go original wrote: `null` lists, and
//! timestamps with nanoseconds and offsets.

use serde::{Deserialize, Deserializer};

/// Go writes a nil slice or map as `null`; read it as empty.
pub(super) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Timestamps as RFC 3339 in UTC with milliseconds (`2026-02-27T14:23:01.234Z`);
/// any RFC 3339 timestamp (Go writes nanoseconds and offsets) is read.
pub(crate) mod timestamp {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    use time::{OffsetDateTime, UtcOffset};

    /// Formats `time` as the crate writes every timestamp.
    pub(crate) fn format(time: OffsetDateTime) -> String {
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        time.to_offset(UtcOffset::UTC)
            .format(&format)
            .unwrap_or_else(|_| time.to_string())
    }

    pub(crate) fn serialize<S: Serializer>(
        time: &OffsetDateTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*time))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
    }

    pub(crate) mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::OffsetDateTime;

        pub(crate) fn serialize<S: Serializer>(
            time: &Option<OffsetDateTime>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => super::serialize(time, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] OffsetDateTime);
            Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(time)| time))
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use crate::model::{LogEntry, Snapshot};

    #[test]
    fn timestamps_are_utc_rfc3339_with_milliseconds() {
        let snapshot = Snapshot {
            timestamp: datetime!(2026-02-27 15:23:01.234567 +01:00),
            ..Snapshot::default()
        };
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(json["timestamp"], "2026-02-27T14:23:01.234Z");
    }

    #[test]
    fn go_nanosecond_timestamps_with_offsets_load() {
        let entry: LogEntry = serde_json::from_str(
            r#"{"time":"2026-02-27T14:23:01.123456789+02:00","level":"warn","message":"m","fields":null}"#,
        )
        .unwrap();
        assert_eq!(entry.time, datetime!(2026-02-27 12:23:01.123456789 UTC));
        assert!(entry.fields.is_empty());
    }
}
