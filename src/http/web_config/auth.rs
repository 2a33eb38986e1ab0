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

#[derive(Default)]
struct Seen {
    right: VecDeque<Vec<u8>>,
    wrong: VecDeque<Vec<u8>>,
}

fn holds(list: &VecDeque<Vec<u8>>, password: &[u8]) -> bool {
    // Every entry is compared, whatever matches, each in constant time.
    list.iter().fold(false, |found, p| {
        found | (p.len() == password.len() && bool::from(p.as_slice().ct_eq(password)))
    })
}

fn remember(list: &mut VecDeque<Vec<u8>>, password: &[u8]) {
    if list.len() >= PER_USER {
        list.pop_front();
    }
    list.push_back(password.to_vec());
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
        {
            let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(s) = seen.get(&key) {
                let right = holds(&s.right, password);
                let wrong = holds(&s.wrong, password);
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
            remember(&mut s.right, password);
        } else {
            remember(&mut s.wrong, password);
        }
        ok && known.is_some()
    }
}
