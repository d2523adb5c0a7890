//! `basic_auth_users`: user names and bcrypt hashes. A bcrypt costs tens of milliseconds, so
//! what was verified is remembered (keyed by a digest, never the password) in a bounded cache,
//! as the Go toolkit does, and a scrape every few seconds costs a hash lookup.

use std::{
    collections::BTreeMap,
    sync::{Mutex, OnceLock},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq as _};

use super::Problem;

/// Verified credentials remembered, right or wrong; the oldest goes first.
pub(super) const CACHE_ENTRIES: usize = 128;

/// A user name and password from an `Authorization: Basic` header.
pub struct Credentials {
    user: String,
    password: Vec<u8>,
}

impl Credentials {
    /// The credentials of an `Authorization` header's value, if it holds basic ones.
    pub fn from_header(value: &[u8]) -> Option<Self> {
        let (scheme, encoded) = value.split_at_checked(6)?;
        if !scheme.eq_ignore_ascii_case(b"basic ") {
            return None;
        }
        let decoded = STANDARD.decode(encoded.trim_ascii()).ok()?;
        let colon = decoded.iter().position(|byte| *byte == b':')?;
        Some(Self {
            user: String::from_utf8(decoded[..colon].to_vec()).ok()?,
            password: decoded[colon + 1..].to_vec(),
        })
    }
}

pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// Compared against for an unknown user, so that it takes as long as a known one.
    decoy: OnceLock<String>,
    /// Mixed into the cache's digests, so that they say nothing outside this process.
    secret: [u8; 32],
    cache: Mutex<Cache>,
}

impl BasicAuth {
    pub(super) fn new(users: BTreeMap<String, String>) -> Result<Self, Problem> {
        for (user, hash) in &users {
            hash.parse::<bcrypt::HashParts>().map_err(|error| {
                Problem::config(format!(
                    "basic_auth_users: the password of {} is not a bcrypt hash ({error}); \
                     make one with `htpasswd -nBC 10 '' | tr -d ':\\n'`",
                    super::shown(user)
                ))
            })?;
        }
        let mut secret = [0; 32];
        super::tls::ring_provider()
            .secure_random
            .fill(&mut secret)
            .map_err(|_| Problem::config("no random bytes for the credentials cache"))?;
        Ok(Self {
            users,
            decoy: OnceLock::new(),
            secret,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// What was found for `credentials` before, without hashing: `None` if never checked.
    pub fn cached(&self, credentials: &Credentials) -> Option<bool> {
        let digest = self.digest(credentials);
        self.cache.lock().ok()?.find(&digest)
    }

    /// Whether `credentials` are a user's and its password: a bcrypt (tens of milliseconds: on
    /// a blocking thread) unless cached.
    pub fn verify(&self, credentials: &Credentials) -> bool {
        let digest = self.digest(credentials);
        if let Some(known) = self.cache.lock().ok().and_then(|cache| cache.find(&digest)) {
            return known;
        }
        let (hash, known_user) = match self.users.get(&credentials.user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.decoy().as_str(), false),
        };
        // Longer than bcrypt reads (72 bytes) is an error here, not a match on the first 72.
        let matched = bcrypt::non_truncating_verify(&credentials.password, hash).unwrap_or(false);
        let allowed = matched && known_user;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(digest, allowed);
        }
        allowed
    }

    fn decoy(&self) -> &String {
        self.decoy.get_or_init(|| {
            let cost = self
                .users
                .values()
                .filter_map(|hash| hash.parse::<bcrypt::HashParts>().ok())
                .map(|parts| parts.get_cost())
                .max()
                .unwrap_or(bcrypt::DEFAULT_COST);
            bcrypt::hash_with_salt(self.secret, cost, [0; 16])
                .map(|parts| parts.to_string())
                .unwrap_or_default()
        })
    }

    /// The cache's key: the user, the hash it is checked against (so that a changed password
    /// in the file is checked anew) and the password given.
    fn digest(&self, credentials: &Credentials) -> [u8; 32] {
        let hash = self
            .users
            .get(&credentials.user)
            .map_or(&[][..], String::as_bytes);
        let mut digest = Sha256::new();
        digest.update(self.secret);
        for part in [credentials.user.as_bytes(), hash] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        }
        digest.update(&credentials.password);
        digest.finalize().into()
    }
}

#[derive(Default)]
struct Cache {
    entries: Vec<([u8; 32], bool)>,
    /// Where the next entry goes once the cache is full.
    next: usize,
}

impl Cache {
    /// Looks at every entry whatever matches, comparing in constant time.
    fn find(&self, digest: &[u8; 32]) -> Option<bool> {
        let mut found = Choice::from(0);
        let mut allowed = Choice::from(0);
        for (entry, ok) in &self.entries {
            let same = entry.ct_eq(digest);
            found |= same;
            allowed |= same & Choice::from(u8::from(*ok));
        }
        bool::from(found).then_some(bool::from(allowed))
    }

    fn insert(&mut self, digest: [u8; 32], allowed: bool) {
        if self.entries.len() < CACHE_ENTRIES {
            self.entries.push((digest, allowed));
        } else {
            self.entries[self.next] = (digest, allowed);
            self.next = (self.next + 1) % CACHE_ENTRIES;
        }
    }
}
