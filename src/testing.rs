//! The one surface for code outside the crate that is not the binary:
//! `tests/`, `benches/`, `examples/` and fuzz targets. It reaches the wire
//! decoders and encoders, the pure functions from a daemon's reading to
//! families, the shared model, and the pieces the HTTP and scrape tests
//! assemble. It is not a stable API; internals stay private.

/// Wire formats: `&[u8]` in, `Result` out, no IO (fuzz these).
pub mod proto {
    pub use crate::proto::{cmdmon, mode6, ntp, sntp};
}

/// The shared, daemon-agnostic model.
pub mod model {
    pub use crate::model::*;
}

/// Metric descriptors, families and their encoding.
pub mod metrics {
    pub use crate::metrics::{Desc, Encoder, Family, Format, Kind, LabelValue, encode, find};
}

/// The collector trait, the table, and the pure report functions.
pub mod collector {
    pub use crate::collector::flags::flag;
    pub use crate::collector::{
        BoxFuture, CollectError, Collected, Collector, Context, REGISTRY, Registration,
    };

    /// The daemon collector template's sequence numbers and query depth.
    pub mod daemon {
        pub use crate::collector::daemon::{Depth, QueryError, Sequences};
    }

    /// The kernel clock discipline: adjtimex's status bits and its reading.
    pub mod timex {
        pub use crate::collector::timex::{Reading, STATES, STATUS_FLAGS};
    }

    /// systemd-timesyncd over D-Bus: the reading of its properties.
    pub mod timesyncd {
        pub use crate::collector::timesyncd::reading::{NtpMessage, Reading};
    }

    /// ntpd over mode 6: one query, and the reading it decodes to.
    pub mod ntpd {
        pub use crate::collector::ntpd::{Reading, collector, query};
    }

    /// chronyd over cmdmon: the collector and the pure report.
    pub mod chrony {
        pub use crate::collector::chrony::{Snapshot, collector, report};
    }
}

/// One scrape of every collector.
pub use crate::scrape::{Entry, Scraper};

/// The verdict and the landing page.
pub mod diagnose {
    pub use crate::diagnose::findings::{Limits, verdict};
    pub use crate::diagnose::history::History;
    pub use crate::diagnose::page::landing;
}

/// The HTTP server.
pub mod http {
    pub use crate::collector::sntp::probe::Net;
    pub use crate::http::probe::ProbeConfig;
    /// `--web.config.file`: its parser, TLS and basic auth, and the server's
    /// live view of it.
    pub use crate::http::web_config::live::{Active, Security, Verdict};
    pub use crate::http::web_config::{auth, file as web_config_file, tls};
    pub use crate::http::{App, WebConfig, bind, serve};
}

/// File roots and the kernel's notices of address and device changes.
pub mod sys {
    pub use crate::sys::fs::Roots;
    pub use crate::sys::net::NetlinkWatch;
}

/// Parses arguments against every collector's flags.
pub fn parse_from<I, T>(args: I) -> (crate::Cli, clap::ArgMatches)
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    crate::cli::parse_from(crate::collector::REGISTRY, args)
}

pub use crate::{catalogue, metrics_table};

/// Fuzz harnesses, one per target of `fuzz/` (docs/fuzzing.md).
pub mod fuzz;
