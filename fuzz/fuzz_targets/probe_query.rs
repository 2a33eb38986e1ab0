//! `/probe`'s query string, targets and allow-list entries
//! (`testing::fuzz::probe_query`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clock_exporter::testing::fuzz::probe_query(data);
});
