//! Any bytes as READVAR `name=value` data and a READSTAT list (`testing::fuzz::mode6_variables`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clock_exporter::testing::fuzz::mode6_variables(data);
});
