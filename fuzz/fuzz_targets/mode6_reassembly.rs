//! Pieces as the fragments of one mode-6 response (`testing::fuzz::mode6_reassembly`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clock_exporter::testing::fuzz::mode6_reassembly(data);
});
