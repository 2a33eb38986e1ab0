//! An SNTP reply judged against a request's random transmit timestamp
//! (`testing::fuzz::sntp_reply`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clock_exporter::testing::fuzz::sntp_reply(data);
});
