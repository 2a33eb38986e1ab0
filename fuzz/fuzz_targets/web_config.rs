//! `--web.config.file`, parsed and checked (`testing::fuzz::web_config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clock_exporter::testing::fuzz::web_config(data);
});
