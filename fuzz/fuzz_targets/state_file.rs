//! The state-file parser (what `read_state_file` runs on the bytes it
//! read), then everything that shows a parsed file: the status report and
//! writing it back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgmigrator_metrics::{Snapshot, status};

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = serde_json::from_slice::<Snapshot>(data) {
        let _ = status::render(&snapshot, time::OffsetDateTime::now_utc());
        let json = serde_json::to_vec(&snapshot).expect("a parsed snapshot writes back");
        let again: Snapshot = serde_json::from_slice(&json).expect("and reads back");
        assert_eq!(again.tables.len(), snapshot.tables.len());
    }
});
