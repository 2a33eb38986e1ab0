//! Authentication a lab sets up between its client and its honest servers:
//! NTS with certificates of a CA the lab makes on the spot (rcgen, files in
//! the lab's own directory), and symmetric keys, each right or wrong on
//! purpose.
//!
//! - NTS: the server (chronyd) serves NTS-KE on TCP 4460 with a certificate
//!   for its address; the client polls it with `nts` and trusts the lab's
//!   CA (chronyd `ntstrustedcerts`, NTPsec `nts ca` on the server line). An untrusted server's certificate comes from a
//!   second CA the client does not know.
//! - Keys: the server (chronyd) holds key N (`keyfile`); the client polls it
//!   with `key N` and holds the same key, or another value under the same
//!   id. chronyd and NTPsec agree on SHA1 keys given in hexadecimal.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::ca::Ca;
use super::daemons::Daemon;
use super::process::TempDir;

/// How a server authenticates to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAuth {
    /// NTS; `trusted`: its certificate comes from the CA the client trusts.
    Nts { trusted: bool },
    /// A symmetric key; `right`: the client holds the same value.
    Key { right: bool },
}

/// The lab's certificates and keys, in a directory of its own.
pub struct Secrets {
    dir: TempDir,
    ca: Ca,
    stranger: Ca,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// The hexadecimal SHA1 key (40 digits) of key `id`, right or not.
fn key_hex(id: u32, right: bool) -> String {
    let stem = if right {
        "0123456789abcdef0123456789abcdef"
    } else {
        "fedcba9876543210fedcba9876543210"
    };
    format!("{stem}{id:08x}")
}

impl Secrets {
    pub fn new() -> Secrets {
        let s = Secrets {
            dir: TempDir::new("lab-auth"),
            ca: Ca::new("clock_exporter lab CA"),
            stranger: Ca::new("a CA the client does not trust"),
        };
        s.write("ca.pem", &s.ca.pem());
        s
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The CA the client trusts, PEM.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The lines a server's chronyd needs for `auth`; `key_id` is the key
    /// the client polls it with.
    pub fn server_conf(&self, name: &str, addr: Ipv4Addr, auth: ServerAuth, key_id: u32) -> String {
        match auth {
            ServerAuth::Nts { trusted } => {
                let ca = if trusted { &self.ca } else { &self.stranger };
                let (cert, key) = ca.leaf(&[&addr.to_string()]);
                let cert = self.write(&format!("{name}.crt"), &cert);
                let key = self.write(&format!("{name}.key"), &key);
                format!(
                    "ntsservercert {}\nntsserverkey {}\n",
                    cert.display(),
                    key.display()
                )
            }
            ServerAuth::Key { .. } => {
                let file = self.write(
                    &format!("{name}.keys"),
                    &format!("{key_id} SHA1 HEX:{}\n", key_hex(key_id, true)),
                );
                format!("keyfile {}\n", file.display())
            }
        }
    }

    /// What the client's `server` line adds for a server with `auth`
    /// (NTPsec names the CA it trusts on the line itself).
    pub fn server_option(&self, daemon: Daemon, auth: ServerAuth, key_id: u32) -> String {
        match (auth, daemon) {
            (ServerAuth::Nts { .. }, Daemon::Chronyd) => " nts".to_owned(),
            (ServerAuth::Nts { .. }, Daemon::Ntpd) => {
                format!(" nts ca {}", self.ca_path().display())
            }
            (ServerAuth::Key { .. }, Daemon::Chronyd | Daemon::Ntpd) => format!(" key {key_id}"),
            (a, d) => panic!("the lab has no {a:?} for a {d:?} client"),
        }
    }

    /// The client's own lines: the trusted CA for NTS, its key file with
    /// every keyed server's key (`(id, right)`).
    pub fn client_conf(&self, daemon: Daemon, nts: bool, keys: &[(u32, bool)]) -> String {
        let mut conf = String::new();
        if nts && daemon == Daemon::Chronyd {
            writeln!(conf, "ntstrustedcerts {}", self.ca_path().display()).expect("write");
        }
        if keys.is_empty() {
            return conf;
        }
        let mut file = String::new();
        for &(id, right) in keys {
            let hex = key_hex(id, right);
            match daemon {
                Daemon::Chronyd => writeln!(file, "{id} SHA1 HEX:{hex}"),
                Daemon::Ntpd => writeln!(file, "{id} sha1 {hex}"),
                Daemon::Timesyncd => panic!("timesyncd has no keys"),
            }
            .expect("write");
        }
        let path = self.write("client.keys", &file);
        match daemon {
            Daemon::Chronyd => writeln!(conf, "keyfile {}", path.display()),
            Daemon::Ntpd => {
                let ids: Vec<String> = keys.iter().map(|(id, _)| id.to_string()).collect();
                writeln!(
                    conf,
                    "keys {}\ntrustedkey {}",
                    path.display(),
                    ids.join(" ")
                )
            }
            Daemon::Timesyncd => unreachable!(),
        }
        .expect("write");
        conf
    }
}
