//! Pieces as ntpd's datagrams, through the ntpd collector (`testing::fuzz::ntpd`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = clock_exporter::testing::fuzz::ntpd(data);
});
