//! Any bytes as the reply to every cmdmon request (`testing::fuzz::cmdmon_reply`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clock_exporter::testing::fuzz::cmdmon_reply(data);
});
