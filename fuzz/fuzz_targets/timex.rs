//! Any bytes as `struct timex`, through the timex collector (`testing::fuzz::timex`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clock_exporter::testing::fuzz::timex(data);
});
