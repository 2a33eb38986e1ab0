//! Pieces as the proc and sys files of the clocksource collector (`testing::fuzz::clocksource`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = clock_exporter::testing::fuzz::clocksource(data);
});
