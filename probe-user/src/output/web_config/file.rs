//! The web configuration file as written: the keys of the Prometheus exporter-toolkit's format
//! (`docs/web-configuration.md` there), every other key refused by name.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebConfigFile {
    pub(super) tls_server_config: Option<TlsServerConfig>,
    pub(super) http_server_config: Option<HttpServerConfig>,
    pub(super) basic_auth_users: Option<BTreeMap<String, String>>,
    /// Known to the format, not served here: refused rather than ignored.
    pub(super) rate_limit: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsServerConfig {
    pub(super) cert: Option<String>,
    pub(super) key: Option<String>,
    pub(super) client_ca: Option<String>,
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) client_ca_file: Option<String>,
    pub(super) client_auth_type: Option<ClientAuthType>,
    /// Known to the format, not enforced here: refused rather than ignored.
    pub(super) client_allowed_sans: Option<Vec<String>>,
    pub(super) min_version: Option<TlsVersion>,
    pub(super) max_version: Option<TlsVersion>,
    pub(super) cipher_suites: Option<Vec<String>>,
    pub(super) prefer_server_cipher_suites: Option<bool>,
    pub(super) curve_preferences: Option<Vec<String>>,
}

/// Go's `tls.ClientAuthType`, by the names the format uses.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ClientAuthType {
    /// No client certificate asked for.
    #[default]
    NoClientCert,
    /// Asked for, not required, not verified.
    RequestClientCert,
    /// Required, not verified against a CA (the client still proves it holds its key).
    RequireAnyClientCert,
    /// Not required; verified against `client_ca_file` when given.
    VerifyClientCertIfGiven,
    /// Required and verified against `client_ca_file`.
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub(super) enum TlsVersion {
    TLS10,
    TLS11,
    TLS12,
    TLS13,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpServerConfig {
    pub(super) http2: Option<bool>,
    pub(super) headers: Option<BTreeMap<String, String>>,
}

/// Parses `text`; an empty file (or one of comments) is the empty configuration, as in the Go
/// toolkit.
pub(super) fn parse(text: &str) -> Result<WebConfigFile, String> {
    let parsed: Option<WebConfigFile> =
        serde_yaml_ng::from_str(text).map_err(|error| without_values(&error.to_string()))?;
    Ok(parsed.unwrap_or_default())
}

/// The parser's message with what the file holds left out: it quotes values (`string "…"`) and
/// unknown names (`` `…` ``), and the file holds keys and password hashes, which must not reach
/// a terminal or a journal. Names of the format's own keys and variants (short identifiers) stay.
fn without_values(message: &str) -> String {
    let mut said = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        let quote = rest[start..].chars().next().expect("found");
        said.push_str(&rest[..=start]);
        let quoted = &rest[start + 1..];
        let mut escaped = false;
        let end = quoted.char_indices().find_map(|(at, c)| {
            let closes = c == quote && !escaped;
            escaped = quote == '"' && c == '\\' && !escaped;
            closes.then_some(at)
        });
        let Some(end) = end else {
            said.push('…');
            return said;
        };
        let inner = &quoted[..end];
        // What the file names that the format does not know is kept when it reads as a name
        // (a typo), not as a fragment of a key pasted as a key or a variant.
        let a_name = quote == '`'
            && inner.len() <= 40
            && !super::may_be_secret(inner)
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        said.push_str(if a_name { inner } else { "…" });
        said.push(quote);
        rest = &quoted[end + 1..];
    }
    said.push_str(rest);
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_where_and_what_but_not_the_files_secrets() {
        for (text, secret, kept) in [
            (
                "basic_auth_users: \"$2y$10$SECRETHASH\"\n",
                "SECRETHASH",
                "line 1",
            ),
            (
                "tls_server_config:\n  client_auth_type: \"-----BEGIN PRIVATE KEY----- SECRETKEY\"\n",
                "SECRETKEY",
                "expected one of `NoClientCert`",
            ),
            (
                "tls_server_config:\n  \"-----BEGIN PRIVATE KEY----- SECRETKEY\": 1\n",
                "SECRETKEY",
                "expected one of `cert`",
            ),
            (
                "tls_server_config:\n  keyfile: x\n",
                "\u{0}",
                "unknown field `keyfile`",
            ),
        ] {
            let error = parse(text).expect_err(text);
            assert!(!error.contains(secret), "{error}");
            assert!(error.contains(kept), "{error}");
        }
    }

    #[test]
    fn quotes_are_closed_and_escapes_followed() {
        assert_eq!(
            without_values(r#"invalid type: string "a\"b", expected `x`"#),
            "invalid type: string \"…\", expected `x`"
        );
        assert_eq!(without_values("cut \"short"), "cut \"…");
    }
}
