//! `--web-config FILE`: the Prometheus exporter-toolkit's web configuration file, which makes
//! the metrics endpoint safe on a node's network: HTTPS (`tls_server_config`, client
//! certificates included), basic authentication (`basic_auth_users`, bcrypt) and response
//! headers (`http_server_config.headers`). Everything the format says that is not done here is
//! refused by name, never ignored.
//!
//! The file is looked at again for each new connection ([`WebConfigWatch::current`]): a few
//! `stat` calls when nothing changed, a new load when the file or a certificate, key or CA it
//! names changed, so certificates rotate without a restart. A load that fails keeps the last
//! good configuration and is said once per change.

mod basic_auth;
mod file;
mod files;
mod tls;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use self::files::{Files, Stamp};
pub use self::{
    basic_auth::{BasicAuth, Credentials},
    file::ClientAuthType,
};
use crate::net::names::printable;
use hyper::header::{HeaderName, HeaderValue};

/// The response headers the format lets a configuration set, as written and as HTTP/1 sends
/// them, with the values it accepts (`None`: any).
const HEADERS: &[(&str, &str, Option<&[&str]>)] = &[
    ("Content-Security-Policy", "content-security-policy", None),
    (
        "X-Frame-Options",
        "x-frame-options",
        Some(&["deny", "sameorigin"]),
    ),
    (
        "X-Content-Type-Options",
        "x-content-type-options",
        Some(&["nosniff"]),
    ),
    ("X-XSS-Protection", "x-xss-protection", None),
    (
        "Strict-Transport-Security",
        "strict-transport-security",
        None,
    ),
];

/// What a web configuration asks for, checked and ready to serve with.
pub struct WebConfig {
    tls: Option<Arc<rustls::ServerConfig>>,
    basic_auth: Option<BasicAuth>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl WebConfig {
    /// The TLS server's configuration; `None` serves plain HTTP.
    pub fn tls(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.tls.as_ref()
    }

    /// The users allowed; `None` lets anyone read.
    pub fn basic_auth(&self) -> Option<&BasicAuth> {
        self.basic_auth.as_ref()
    }

    /// Headers added to every response.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Loads `path` and the files it names; the stamp says what was read, even when it fails.
    fn load(path: &Path) -> (Result<Self, WebConfigError>, Stamp) {
        let mut files = Files::new(path);
        let result = Self::read(path, &mut files).map_err(|problem| WebConfigError {
            file: problem.file.unwrap_or_else(|| path.to_path_buf()),
            problem: problem.message,
        });
        (result, files.stamp)
    }

    fn read(path: &Path, files: &mut Files) -> Result<Self, Problem> {
        let (text, _) = files.read(Path::new(path.file_name().unwrap_or(path.as_os_str())))?;
        let text = String::from_utf8(text).map_err(|_| Problem::config("not UTF-8 text"))?;
        let config = file::parse(&text).map_err(Problem::config)?;
        if config.rate_limit.is_some() {
            return Err(Problem::config(
                "rate_limit is not supported by localnet-probe, which closes connections \
                 beyond 64 at once instead",
            ));
        }
        let tls = config
            .tls_server_config
            .map(|tls| tls::server_config(&tls, files).map(Arc::new))
            .transpose()?;
        let mut headers = Vec::new();
        if let Some(http) = config.http_server_config {
            if http.http2 == Some(true) {
                return Err(Problem::config(
                    "http_server_config.http2: localnet-probe serves HTTP/1.1 only; set http2: \
                     false or leave it out (Prometheus scrapes over HTTP/1.1)",
                ));
            }
            for (name, value) in http.headers.unwrap_or_default() {
                let Some((known, lowercase, allowed)) =
                    HEADERS.iter().find(|(known, ..)| *known == name)
                else {
                    return Err(Problem::config(format!(
                        "http_server_config.headers: {} cannot be set; these can: {}",
                        shown(&name),
                        HEADERS
                            .iter()
                            .map(|(known, ..)| *known)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                };
                if value.is_empty() {
                    continue;
                }
                if let Some(allowed) = allowed
                    && !allowed.iter().any(|ok| ok.eq_ignore_ascii_case(&value))
                {
                    return Err(Problem::config(format!(
                        "http_server_config.headers: {known} is {value:?}; it can be {}",
                        allowed.join(" or ")
                    )));
                }
                let value = HeaderValue::from_str(&value).map_err(|_| {
                    Problem::config(format!(
                        "http_server_config.headers: {known} {value:?} is not a header value"
                    ))
                })?;
                headers.push((HeaderName::from_static(lowercase), value));
            }
        }
        let basic_auth = config
            .basic_auth_users
            .filter(|users| !users.is_empty())
            .map(BasicAuth::new)
            .transpose()?;
        Ok(Self {
            tls,
            basic_auth,
            headers,
        })
    }
}

/// Whether `value` may be a key, a certificate or a password hash rather than a name: several
/// lines, a PEM or bcrypt marker, a run of base64 as a key's lines are (mixed case with digits
/// or capitals in a row, no separator, longer than a word), or longer than any name or path the
/// format takes.
fn may_be_secret(value: &str) -> bool {
    // `/` is a base64 digit too: a line of a key has one more often than not. A path with
    // one is told apart by a `.`, `-` or `_` (a file's extension, a directory's name).
    let base64_run = value.len() >= 12
        && !value.contains(['_', '-', ' ', '.'])
        && value.chars().any(|c| c.is_ascii_uppercase())
        && value.chars().any(|c| c.is_ascii_lowercase())
        && (value
            .chars()
            .any(|c| c.is_ascii_digit() || c == '+' || c == '/')
            || value
                .as_bytes()
                .windows(3)
                .any(|three| three.iter().all(u8::is_ascii_uppercase)));
    base64_run
        || value.contains(['\n', '\r'])
        || value.contains("-----BEGIN")
        || value.starts_with("$2")
        || value.len() > 255
}

/// A name or path from the configuration as an error shows it: as written (escaped), unless it
/// may be secret material put in the wrong place (over several lines, a PEM block, a bcrypt
/// hash, longer than a name or path is): then only its length, so that the error, which reaches
/// a terminal or a journal, never carries a key or a password hash.
fn shown(value: &str) -> String {
    if may_be_secret(value) {
        format!(
            "a value of {} bytes (left out here: it may be a key or a hash)",
            value.len()
        )
    } else {
        format!("\"{}\"", printable(value))
    }
}

/// What is wrong with a web configuration, and in which file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", shown_path(file))]
pub struct WebConfigError {
    file: PathBuf,
    problem: String,
}

/// A file's path as an error shows it: a path from the configuration may be anything.
fn shown_path(file: &Path) -> String {
    let path = file.to_string_lossy();
    if shown(&path).starts_with('"') {
        printable(&path).into_owned()
    } else {
        shown(&path)
    }
}

/// A problem found while loading; in the configuration file itself unless `file` says.
struct Problem {
    file: Option<PathBuf>,
    message: String,
}

impl Problem {
    fn config(message: impl Into<String>) -> Self {
        Self {
            file: None,
            message: message.into(),
        }
    }

    fn in_file(file: &Path, message: String) -> Self {
        Self {
            file: Some(file.to_path_buf()),
            message,
        }
    }
}

/// A web configuration file, followed: [`Self::current`] is the configuration to serve a new
/// connection with.
pub struct WebConfigWatch {
    path: PathBuf,
    /// The configuration in force, read without waiting for a reload.
    good: Mutex<Arc<WebConfig>>,
    reload: Mutex<Reload>,
}

struct Reload {
    /// The files of the configuration in force.
    good: Stamp,
    /// The files of the last load that failed, while it is the latest: said once, tried again
    /// only when one of them changes.
    failed: Option<Stamp>,
}

impl WebConfigWatch {
    /// Loads `path` at start: a configuration that cannot be served is an error.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let (config, stamp) = WebConfig::load(path);
        Ok(Self {
            path: path.to_path_buf(),
            good: Mutex::new(Arc::new(config?)),
            reload: Mutex::new(Reload {
                good: stamp,
                failed: None,
            }),
        })
    }

    /// The configuration in force, without looking at the files.
    pub fn last_good(&self) -> Arc<WebConfig> {
        Arc::clone(
            &self
                .good
                .lock()
                .expect("never poisoned: no panic while held"),
        )
    }

    /// The configuration to serve a new connection with: loaded again if a file it was read
    /// from changed. Blocking (`stat`, and the reads of a reload): call it off the async loop.
    pub fn current(&self) -> Arc<WebConfig> {
        let mut reload = self
            .reload
            .lock()
            .expect("never poisoned: no panic while held");
        let looked_at = reload.failed.as_ref().unwrap_or(&reload.good);
        if !looked_at.changed() {
            return self.last_good();
        }
        let path = self.path.display().to_string();
        let shown = printable(&path);
        let (config, stamp) = WebConfig::load(&self.path);
        let was_tls = self.last_good().tls.is_some();
        match config {
            Ok(config) if config.tls.is_some() == was_tls => {
                tracing::info!("web configuration {shown} reloaded");
                *self
                    .good
                    .lock()
                    .expect("never poisoned: no panic while held") = Arc::new(config);
                reload.good = stamp;
                reload.failed = None;
            }
            Ok(_) => {
                tracing::warn!(
                    "web configuration {shown}: switching between HTTPS and plain HTTP needs a \
                     restart; keeping the last good configuration"
                );
                reload.failed = Some(stamp);
            }
            Err(error) => {
                tracing::warn!("{error}; keeping the last good web configuration");
                reload.failed = Some(stamp);
            }
        }
        self.last_good()
    }
}

#[cfg(test)]
mod tests;
