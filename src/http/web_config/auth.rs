//! `basic_auth_users`: HTTP basic authentication against bcrypt hashes.
//!
//! bcrypt costs tens of milliseconds by design, more than a scrape, so
//! outcomes are cached: per user and hash (a changed hash starts afresh),
//! the passwords already found right and wrong, compared in constant time
//! (`subtle`), at most [`PER_USER`] of each, the oldest dropped first. A
//! cache miss runs bcrypt on the blocking pool, one at a time, so a flood
//! of wrong passwords costs one core at most. An unknown user is checked
//! against a hash of the same cost as the users', so the answer's timing
//! does not say which users exist.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Cached outcomes kept per user, of each kind.
pub const PER_USER: usize = 8;

/// The longest password compared (bcrypt reads 72 bytes; longer ones are
/// refused rather than cut, so two passwords never pass for one).
pub const MAX_PASSWORD_BYTES: usize = 72;

/// The credentials of an `Authorization: Basic` header, or why not.
pub fn parse_basic(header: &[u8]) -> Option<(String, Vec<u8>)> {
    let text = std::str::from_utf8(header).ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || encoded.len() > 4096 {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// A password as the cache holds it: its length, then its bytes, padded
/// with zeros to [`MAX_PASSWORD_BYTES`], so that every comparison reads
/// the same number of bytes whatever the lengths (a length compared first
/// would tell a timing observer how long a cached password is).
type Padded = [u8; MAX_PASSWORD_BYTES + 1];

fn padded(password: &[u8]) -> Padded {
    let mut p = [0; MAX_PASSWORD_BYTES + 1];
    let n = password.len().min(MAX_PASSWORD_BYTES);
    p[0] = n as u8;
    p[1..=n].copy_from_slice(&password[..n]);
    p
}

#[derive(Default)]
struct Seen {
    right: VecDeque<Padded>,
    wrong: VecDeque<Padded>,
}

fn holds(list: &VecDeque<Padded>, password: &Padded) -> bool {
    // Every entry is compared, whatever matches, each in constant time.
    list.iter()
        .fold(false, |found, p| found | bool::from(p.ct_eq(password)))
}

fn remember(list: &mut VecDeque<Padded>, password: Padded) {
    if list.len() >= PER_USER {
        list.pop_front();
    }
    list.push_back(password);
}

/// Checks credentials against one version of `basic_auth_users`.
pub struct Authenticator {
    users: BTreeMap<String, String>,
    /// What unknown users are checked against.
    decoy: String,
    seen: Mutex<HashMap<(String, String), Seen>>,
    bcrypt_turn: Arc<Semaphore>,
    bcrypt_runs: AtomicU64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// For these users (name → bcrypt hash, checked by the parser).
    pub fn new(users: BTreeMap<String, String>) -> Authenticator {
        let cost = users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let decoy = bcrypt::hash("not a password anyone has", cost).unwrap_or_else(|_| {
            String::from("$2b$04$......................................................")
        });
        Authenticator {
            users,
            decoy,
            seen: Mutex::new(HashMap::new()),
            bcrypt_turn: Arc::new(Semaphore::new(1)),
            bcrypt_runs: AtomicU64::new(0),
        }
    }

    /// How many times bcrypt has run (cache misses).
    pub fn bcrypt_runs(&self) -> u64 {
        self.bcrypt_runs.load(Ordering::Relaxed)
    }

    /// Whether any user is configured (no users: no authentication).
    pub fn enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether `user` with `password` may in.
    pub async fn check(&self, user: &str, password: &[u8]) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            return false;
        }
        let known = self.users.get(user);
        let hash = known.unwrap_or(&self.decoy).clone();
        let key = (user.to_owned(), hash.clone());
        let cached = padded(password);
        {
            let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(s) = seen.get(&key) {
                let right = holds(&s.right, &cached);
                let wrong = holds(&s.wrong, &cached);
                if right || wrong {
                    return right && known.is_some();
                }
            }
        }
        let Ok(_turn) = self.bcrypt_turn.acquire().await else {
            return false;
        };
        self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
        let pw = password.to_vec();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(&pw, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded: at most every configured user plus as many unknown
        // names as fit; unknown names are forgotten wholesale.
        if seen.len() > self.users.len() + 1024 {
            seen.retain(|(u, _), _| self.users.contains_key(u));
        }
        let s = seen.entry(key).or_default();
        if ok {
            remember(&mut s.right, cached);
        } else {
            remember(&mut s.wrong, cached);
        }
        ok && known.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_passwords_differ_by_length_and_bytes_alone() {
        let list: VecDeque<Padded> = [padded(b"pw"), padded(b"")].into();
        assert!(holds(&list, &padded(b"pw")));
        assert!(holds(&list, &padded(b"")));
        // A zero byte more is another password, though padding is zeros.
        assert!(!holds(&list, &padded(b"pw\0")));
        assert!(!holds(&list, &padded(b"p")));
        assert!(!holds(&list, &padded(b"pW")));
        let longest = [b'x'; MAX_PASSWORD_BYTES];
        let p = padded(&longest);
        assert_eq!(usize::from(p[0]), MAX_PASSWORD_BYTES);
        assert!(holds(&[p].into(), &padded(&longest)));
        assert!(!holds(&[p].into(), &padded(&longest[1..])));
    }
}
