use std::{fs, path::PathBuf};

use base64::{Engine as _, engine::general_purpose::STANDARD};

use super::*;

/// A directory of its own under the system's temporary one, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("localnet-probe-web-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create a test directory");
        Self(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).expect("write a test file");
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate and its key, as PEM.
fn self_signed(name: &str) -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("generate a certificate");
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

fn load_error(dir: &Dir, text: &str) -> String {
    let path = dir.write("web.yml", text);
    match WebConfigWatch::load(&path) {
        Ok(_) => panic!("loaded: {text}"),
        Err(error) => error.to_string(),
    }
}

fn with_tls(dir: &Dir, extra: &str) -> String {
    let (cert, key) = self_signed("localhost");
    dir.write("cert.pem", &cert);
    dir.write("key.pem", &key);
    format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n{extra}")
}

#[test]
fn an_empty_file_serves_plain_http_to_anyone() {
    let dir = Dir::new("empty");
    let path = dir.write("web.yml", "# nothing yet\n");
    let config = WebConfigWatch::load(&path)
        .expect("an empty file loads")
        .last_good();
    assert!(config.tls().is_none());
    assert!(config.basic_auth().is_none());
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let dir = Dir::new("unknown");
    let error = load_error(&dir, "tls_server_confg:\n  cert_file: a\n");
    assert!(error.contains("tls_server_confg"), "{error}");
    assert!(error.contains("web.yml"), "{error}");
    let error = load_error(&dir, &with_tls(&dir, "  client_auth: NoClientCert\n"));
    assert!(error.contains("client_auth"), "{error}");
}

#[test]
fn settings_that_cannot_be_honoured_are_refused() {
    let dir = Dir::new("refused");
    for (extra, expected) in [
        ("  min_version: TLS10\n", "TLS 1.2 and 1.3 only"),
        ("  max_version: TLS11\n", "TLS 1.2 and 1.3 only"),
        (
            "  min_version: TLS13\n  max_version: TLS12\n",
            "above max_version",
        ),
        (
            "  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n",
            "\"TLS_RSA_WITH_AES_128_CBC_SHA\" is not offered",
        ),
        ("  curve_preferences: [CurveP521]\n", "\"CurveP521\""),
        (
            "  client_auth_type: Sometimes\n",
            "unknown variant `Sometimes`",
        ),
        (
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "no client_ca_file",
        ),
        ("  client_ca_file: cert.pem\n", "NoClientCert"),
        ("  client_allowed_sans: [a]\n", "client_allowed_sans"),
        ("  cert: inline\n", "both cert and cert_file"),
    ] {
        let error = load_error(&dir, &with_tls(&dir, extra));
        assert!(error.contains(expected), "{extra}: {error}");
    }
    for (text, expected) in [
        ("http_server_config:\n  http2: true\n", "HTTP/1.1 only"),
        (
            "http_server_config:\n  headers:\n    Server: x\n",
            "\"Server\" cannot be set",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "deny or sameorigin",
        ),
        ("rate_limit:\n  interval: 1s\n", "rate_limit"),
        ("basic_auth_users:\n  alice: secret\n", "not a bcrypt hash"),
        (
            "tls_server_config:\n  key_file: key.pem\n",
            "needs cert_file",
        ),
    ] {
        let error = load_error(&dir, text);
        assert!(error.contains(expected), "{text}: {error}");
    }
}

#[test]
fn a_bad_certificate_is_named_by_its_file() {
    let dir = Dir::new("badcert");
    let text = with_tls(&dir, "");
    dir.write("cert.pem", "not a certificate\n");
    let error = load_error(&dir, &text);
    assert!(
        error.contains("cert.pem: holds no PEM certificate"),
        "{error}"
    );
    fs::remove_file(dir.0.join("cert.pem")).unwrap();
    let error = load_error(&dir, &text);
    assert!(error.contains("cert.pem: cannot read"), "{error}");
    // A key that is not the certificate's.
    let (_, other_key) = self_signed("other");
    dir.write("cert.pem", &self_signed("localhost").0);
    dir.write("key.pem", &other_key);
    let error = load_error(&dir, &text);
    assert!(error.contains("do not go together"), "{error}");
}

#[test]
fn a_fifo_or_a_directory_is_refused_without_waiting_for_a_writer() {
    let dir = Dir::new("fifo");
    let text = with_tls(&dir, "");
    fs::remove_file(dir.0.join("key.pem")).unwrap();
    let fifo = std::ffi::CString::new(dir.0.join("key.pem").into_os_string().into_encoded_bytes())
        .unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let error = load_error(&dir, &text);
    assert!(error.contains("key.pem: not a regular file"), "{error}");
    fs::remove_file(dir.0.join("key.pem")).unwrap();
    fs::create_dir(dir.0.join("key.pem")).unwrap();
    let error = load_error(&dir, &text);
    assert!(error.contains("key.pem: not a regular file"), "{error}");
}

#[test]
fn every_client_auth_type_loads_with_what_it_needs() {
    let dir = Dir::new("clientauth");
    let (ca, _) = self_signed("ca");
    dir.write("ca.pem", &ca);
    for (auth, needs_ca) in [
        ("NoClientCert", false),
        ("RequestClientCert", false),
        ("RequireAnyClientCert", false),
        ("VerifyClientCertIfGiven", true),
        ("RequireAndVerifyClientCert", true),
    ] {
        let ca_line = if needs_ca {
            "  client_ca_file: ca.pem\n"
        } else {
            ""
        };
        let text = with_tls(&dir, &format!("  client_auth_type: {auth}\n{ca_line}"));
        let path = dir.write("web.yml", &text);
        let config = WebConfigWatch::load(&path)
            .unwrap_or_else(|error| panic!("{auth}: {error}"))
            .last_good();
        assert!(config.tls().is_some(), "{auth}");
    }
}

#[test]
fn versions_suites_and_curves_are_applied() {
    let dir = Dir::new("suites");
    let text = with_tls(
        &dir,
        "  min_version: TLS13\n  cipher_suites: [TLS_AES_256_GCM_SHA384, \
         TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519]\n  \
         prefer_server_cipher_suites: false\n",
    );
    let path = dir.write("web.yml", &text);
    let config = WebConfigWatch::load(&path).expect("loads").last_good();
    let tls = config.tls().expect("TLS");
    assert!(!tls.ignore_client_order);
    let provider = tls.crypto_provider();
    let suites: Vec<String> = provider
        .cipher_suites
        .iter()
        .map(|suite| format!("{:?}", suite.suite()))
        .collect();
    assert_eq!(
        suites,
        [
            "TLS13_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        ]
    );
    let groups: Vec<String> = provider
        .kx_groups
        .iter()
        .map(|group| format!("{:?}", group.name()))
        .collect();
    assert_eq!(groups, ["X25519"]);
}

fn header(user: &str, password: &str) -> Vec<u8> {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))).into_bytes()
}

#[test]
fn basic_auth_checks_bcrypt_and_caches_what_it_found() {
    let dir = Dir::new("basic");
    let hash = bcrypt::hash("s3cret", 4).expect("hash");
    let path = dir.write(
        "web.yml",
        &format!(
            "basic_auth_users:\n  alice: '{hash}'\nhttp_server_config:\n  headers:\n    \
             X-Content-Type-Options: nosniff\n"
        ),
    );
    let config = WebConfigWatch::load(&path).expect("loads").last_good();
    assert_eq!(
        config.headers(),
        [(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff")
        )]
    );
    let auth = config.basic_auth().expect("users");
    let right = Credentials::from_header(&header("alice", "s3cret")).expect("basic");
    let wrong = Credentials::from_header(&header("alice", "guess")).expect("basic");
    let stranger = Credentials::from_header(&header("mallory", "s3cret")).expect("basic");
    let long = Credentials::from_header(&header("alice", &"s3cret".repeat(13))).expect("basic");
    assert_eq!(auth.cached(&right), None);
    assert!(auth.verify(&right));
    assert_eq!(auth.cached(&right), Some(true));
    assert!(!auth.verify(&wrong));
    assert_eq!(auth.cached(&wrong), Some(false));
    assert!(!auth.verify(&stranger));
    assert!(!auth.verify(&long), "a password past bcrypt's 72 bytes");
    assert!(Credentials::from_header(b"Bearer abc").is_none());
    assert!(Credentials::from_header(b"Basic !!!").is_none());
    // The scheme is case-insensitive (RFC 9110).
    let mut lower = header("alice", "s3cret");
    lower[..5].copy_from_slice(b"basic");
    assert!(auth.verify(&Credentials::from_header(&lower).expect("basic")));
}

#[test]
fn the_cache_stays_bounded() {
    let dir = Dir::new("cache");
    let hash = bcrypt::hash("pw", 4).expect("hash");
    let path = dir.write(
        "web.yml",
        &format!("basic_auth_users:\n  alice: '{hash}'\n"),
    );
    let config = WebConfigWatch::load(&path).expect("loads").last_good();
    let auth = config.basic_auth().expect("users");
    let first = Credentials::from_header(&header("alice", "pw")).unwrap();
    assert!(auth.verify(&first));
    for n in 0..basic_auth::CACHE_ENTRIES {
        let guess = Credentials::from_header(&header("alice", &format!("guess{n}"))).unwrap();
        assert!(!auth.verify(&guess));
    }
    assert_eq!(auth.cached(&first), None, "the oldest entry went first");
    assert!(auth.verify(&first));
}

#[test]
fn a_bad_file_later_keeps_the_last_good_one_until_fixed() {
    let dir = Dir::new("reload");
    let first = bcrypt::hash("one", 4).unwrap();
    let path = dir.write(
        "web.yml",
        &format!("basic_auth_users:\n  alice: '{first}'\n"),
    );
    let watch = WebConfigWatch::load(&path).expect("loads");
    let before = watch.current();
    assert!(
        Arc::ptr_eq(&before, &watch.current()),
        "unchanged: not read again"
    );

    dir.write("web.yml", "basic_auth_users: [\n");
    let kept = watch.current();
    assert!(
        Arc::ptr_eq(&before, &kept),
        "a bad file keeps the last good one"
    );
    assert!(watch.reload.lock().unwrap().failed.is_some());

    let second = bcrypt::hash("two", 4).unwrap();
    dir.write(
        "web.yml",
        &format!("basic_auth_users:\n  alice: '{second}'\n"),
    );
    let after = watch.current();
    assert!(!Arc::ptr_eq(&before, &after), "the fixed file is loaded");
    let two = Credentials::from_header(&header("alice", "two")).unwrap();
    assert!(after.basic_auth().unwrap().verify(&two));
    assert!(watch.reload.lock().unwrap().failed.is_none());
}

#[test]
fn a_rotated_certificate_is_loaded_and_tls_stays_on() {
    let dir = Dir::new("rotate");
    let path = dir.write("web.yml", &with_tls(&dir, ""));
    let watch = WebConfigWatch::load(&path).expect("loads");
    let before = watch.current();
    let (cert, key) = self_signed("rotated");
    dir.write("cert.pem", &cert);
    dir.write("key.pem", &key);
    let after = watch.current();
    assert!(
        !Arc::ptr_eq(&before, &after),
        "a new certificate is a new configuration"
    );
    // Turning TLS off needs a restart: the last good one stays.
    dir.write("web.yml", "");
    assert!(Arc::ptr_eq(&after, &watch.current()));
}

/// Key material or a password hash put where a path, a name or a key of the format goes is
/// never repeated by the error: errors reach terminals and journals.
#[test]
fn errors_leave_out_what_may_be_a_key_or_a_hash() {
    let dir = Dir::new("secrets");
    let (cert, key) = self_signed("localhost");
    dir.write("cert.pem", &cert);
    let body = key
        .lines()
        .find(|line| !line.starts_with("-----"))
        .expect("a line of the key")
        .to_owned();
    let indented: String = key.lines().map(|line| format!("    {line}\n")).collect();
    // A whole line, and a fragment short enough to pass for a name, recognised by a digit (a
    // fragment of letters alone reads like a name, and is not told apart from one).
    let line = body.as_str();
    let fragment = (0..body.len() - 14)
        .map(|at| &body[at..at + 14])
        .find(|window| window.chars().any(|c| c.is_ascii_digit()))
        .expect("a line of a key has digits");
    for text in [
        format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: |\n{indented}"),
        format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  {fragment}: 1\n"),
        format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  \"{line}\": 1\n"),
        format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_auth_type: {fragment}\n"),
        format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  cipher_suites: [\"{body}\"]\n"),
        format!("http_server_config:\n  headers:\n    {fragment}: x\n"),
        "basic_auth_users:\n  \"$2y$10$SECRETHASHSECRETHASHSECRETHASHSECRETHASHSECRETHASHSEC\": x\n"
            .to_owned(),
    ] {
        dir.write("key.pem", &key);
        let error = load_error(&dir, &text);
        for secret in [fragment, &line[..14], "SECRETHASH", "PRIVATE KEY"] {
            assert!(!error.contains(secret), "{secret} in: {error}");
        }
    }
    // A typo of a key is still named.
    let error = load_error(&dir, "tls_server_config:\n  key_fil: key.pem\n");
    assert!(error.contains("unknown field `key_fil`"), "{error}");
}
