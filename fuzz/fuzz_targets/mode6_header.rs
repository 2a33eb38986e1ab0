//! Any bytes as a mode-6 header and fragment (`testing::fuzz::mode6_header`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clock_exporter::testing::fuzz::mode6_header(data);
});
