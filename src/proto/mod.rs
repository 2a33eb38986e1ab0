//! Pure wire formats: `&[u8]` in, `Result` out, no IO.

pub mod cmdmon;
pub mod mode6;
pub mod ntp;
pub mod sntp;
