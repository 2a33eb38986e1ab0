//! timesyncd's GetAll answer as D-Bus bytes, through zvariant into the
//! timesyncd collector's decoder (`testing::fuzz::timesyncd`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clock_exporter::testing::fuzz::timesyncd(data);
});
