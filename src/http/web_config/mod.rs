//! `--web.config.file`: TLS, client certificates, basic auth, response
//! headers and a rate limit, in exporter-toolkit's format. [`file`] parses
//! and checks the file (pure).

pub mod auth;
pub mod file;
pub mod live;
pub mod tls;

#[cfg(test)]
mod tests;
