//! Any bytes as an NTP packet (`testing::fuzz::ntp_packet`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clock_exporter::testing::fuzz::ntp_packet(data);
});
