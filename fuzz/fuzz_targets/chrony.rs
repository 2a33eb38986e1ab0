//! Pieces as chronyd's replies, through the chrony collector (`testing::fuzz::chrony`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = clock_exporter::testing::fuzz::chrony(data);
});
