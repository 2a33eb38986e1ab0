//! Records as the kernel log hands them out, through the kmsg collector's
//! tally (`testing::fuzz::kmsg`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clock_exporter::testing::fuzz::kmsg(data);
});
