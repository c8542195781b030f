//! `Lsn::from_str` on any text: an LSN or an error, and what parses reads
//! back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgmigrator_metrics::Lsn;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(lsn) = text.parse::<Lsn>()
    {
        assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
    }
});
