//! The only place that touches the operating system: files under the
//! configured roots, the adjtimex system call, CPUID, clocks and interfaces.

pub mod adjtimex;
pub mod cmdmon;
pub mod cpuid;
pub mod fs;
pub mod net;
