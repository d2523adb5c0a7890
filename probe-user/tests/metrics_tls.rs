//! `run --metrics --web-config`: Debian's Prometheus scrapes the probe over HTTPS with basic
//! authentication and a client certificate, and fails to with a wrong password (401), plain
//! HTTP, a CA it does not trust, no client certificate or an expired server certificate; a
//! rotated certificate is served from the next connection on, without a restart; a web
//! configuration broken later keeps the last good one, said once; one broken at start ends the
//! run with status 2. Needs root, except the last.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, TcpStream},
    path::Path,
    process::Command,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, date_time_ymd,
};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _},
};
use serde_json::Value;
use testbed::{Link, ProbeProcess, Prometheus, RECEIVER_IF, TempDir, stderr_of};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
/// Inside the test's own namespaces, so a fixed port collides with nothing.
const ADDRESS: &str = "127.0.0.1:9464";
const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse";

/// A certificate authority made for one test.
struct Ca(CertifiedIssuer<'static, KeyPair>);

/// A certificate and its key, as PEM, and the certificate as DER.
struct Leaf {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self(
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key"))
                .expect("a CA certificate"),
        )
    }

    fn pem(&self) -> String {
        self.0.pem()
    }

    /// A certificate for the probe's address (`server`) or a scraper, valid now unless
    /// `expired`.
    fn leaf(&self, usage: ExtendedKeyUsagePurpose, expired: bool) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("leaf parameters");
        params.distinguished_name.push(DnType::CommonName, "test");
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.0).expect("a certificate");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// Writes `text` to `dir/name` as a rotation does: a new file renamed over the old one.
fn replace(dir: &Path, name: &str, text: &str) {
    let new = dir.join(format!(".{name}.new"));
    std::fs::write(&new, text).expect("write a test file");
    std::fs::rename(&new, dir.join(name)).expect("rename a test file");
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A web configuration for `server.pem` with one user, and client certificates verified
/// against `client-ca.pem` if `client_ca`.
fn web_config(client_ca: bool, password: &str) -> String {
    let hash = bcrypt::hash(password, 6).expect("bcrypt");
    let client_auth = if client_ca {
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.pem\n"
    } else {
        ""
    };
    format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n{client_auth}\
         http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
         basic_auth_users:\n  {USER}: '{hash}'\n"
    )
}

/// What a TLS client got: the server's certificate, and the response's head and body.
struct Fetched {
    server_cert: CertificateDer<'static>,
    status: u16,
    head: String,
    body: String,
}

/// `GET /metrics` over TLS in `link`'s receiver namespace, trusting `ca`, with a client
/// certificate and basic credentials if given; `Err` says why the exchange failed.
fn https_get(
    link: &Link,
    ca: &str,
    client: Option<&Leaf>,
    authorization: Option<&str>,
) -> Result<Fetched, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("a root");
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).expect("a key"),
            )
            .expect("a client certificate"),
        None => builder.with_no_client_auth(),
    };
    let server = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    let authorization =
        authorization.map_or(String::new(), |value| format!("Authorization: {value}\r\n"));
    link.receiver.enter(|| {
        let mut socket = TcpStream::connect(ADDRESS).map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        let mut connection =
            ClientConnection::new(Arc::new(config), server).map_err(|e| e.to_string())?;
        let mut tls = rustls::Stream::new(&mut connection, &mut socket);
        write!(
            tls,
            "GET /metrics HTTP/1.0\r\nHost: {ADDRESS}\r\n{authorization}\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        let read = tls.read_to_end(&mut raw);
        if raw.is_empty() {
            return Err(read
                .err()
                .map_or("no response".to_owned(), |e| e.to_string()));
        }
        let raw = String::from_utf8(raw).map_err(|e| e.to_string())?;
        let (head, body) = raw.split_once("\r\n\r\n").ok_or(raw.clone())?;
        Ok(Fetched {
            server_cert: connection
                .peer_certificates()
                .expect("a server certificate")[0]
                .clone(),
            status: head
                .split(' ')
                .nth(1)
                .and_then(|status| status.parse().ok())
                .ok_or(head.to_owned())?,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        })
    })
}

/// Plain HTTP to the TLS port: what came back, if anything.
fn plain_http_get(link: &Link) -> Vec<u8> {
    link.receiver.enter(|| {
        let mut socket = TcpStream::connect(ADDRESS).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        let _ = write!(socket, "GET /metrics HTTP/1.0\r\nHost: {ADDRESS}\r\n\r\n");
        let mut raw = Vec::new();
        let _ = socket.read_to_end(&mut raw);
        raw
    })
}

/// Prometheus's targets by job: (health, last error), once every job has been scraped.
fn targets(prometheus: &Prometheus, jobs: usize) -> Option<Vec<(String, String, String)>> {
    let answer = prometheus.api("targets", "")?;
    let targets: Vec<(String, String, String)> = answer["data"]["activeTargets"]
        .as_array()?
        .iter()
        .map(|target| {
            let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
            (
                text(&target["labels"]["job"]),
                text(&target["health"]),
                text(&target["lastError"]),
            )
        })
        .collect();
    (targets.len() == jobs && targets.iter().all(|(_, health, _)| health != "unknown"))
        .then_some(targets)
}

fn wait_for_targets(
    prometheus: &Prometheus,
    jobs: usize,
    done: impl Fn(&[(String, String, String)]) -> bool,
) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    loop {
        if let Some(targets) = targets(prometheus, jobs) {
            if done(&targets) {
                return targets;
            }
            last = Some(targets);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus's targets within 30 s: {last:?}; its log: {}",
            prometheus.log()
        );
        thread::sleep(Duration::from_millis(250));
    }
}

fn job<'a>(targets: &'a [(String, String, String)], name: &str) -> (&'a str, &'a str) {
    targets
        .iter()
        .find(|(job, ..)| job == name)
        .map(|(_, health, error)| (health.as_str(), error.as_str()))
        .unwrap_or_else(|| panic!("no job {name} in {targets:?}"))
}

fn scrape_job(name: &str, scheme: &str, tls: &str, password: &str) -> String {
    format!(
        "  - job_name: {name}\n    scheme: {scheme}\n    tls_config:\n{tls}    basic_auth:\n      \
         username: {USER}\n      password: '{password}'\n    static_configs:\n      - targets: \
         ['{ADDRESS}']\n"
    )
}

fn prometheus_config(dir: &Path, jobs: &[String]) -> std::path::PathBuf {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n{}",
        jobs.concat()
    );
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, config).expect("write prometheus.yml");
    path
}

#[test]
#[ignore = "needs root"]
fn prometheus_scrapes_over_https_with_basic_auth_and_a_client_certificate() {
    let link = Link::new("tls");
    let dir = TempDir::new("web-config");
    let path = dir.path();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let stranger_ca = Ca::new("someone else's CA");
    let server = server_ca.leaf(ExtendedKeyUsagePurpose::ServerAuth, false);
    let client = client_ca.leaf(ExtendedKeyUsagePurpose::ClientAuth, false);
    let stranger = stranger_ca.leaf(ExtendedKeyUsagePurpose::ClientAuth, false);
    for (name, text) in [
        ("server.pem", &server.cert),
        ("server-key.pem", &server.key),
        ("client-ca.pem", &client_ca.pem()),
        ("ca.pem", &server_ca.pem()),
        ("stranger-ca.pem", &stranger_ca.pem()),
        ("client.pem", &client.cert),
        ("client-key.pem", &client.key),
    ] {
        std::fs::write(path.join(name), text).expect("write a test file");
    }
    std::fs::write(path.join("web.yml"), web_config(true, PASSWORD)).expect("write web.yml");
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &[
            "--iface",
            RECEIVER_IF,
            "--metrics",
            ADDRESS,
            "--web-config",
            &path.join("web.yml").display().to_string(),
        ],
    );
    probe.wait_ready();

    // The right certificate and password: the page, with the configured header.
    let page = https_get(
        &link,
        &server_ca.pem(),
        Some(&client),
        Some(&basic(USER, PASSWORD)),
    )
    .unwrap_or_else(|error| panic!("{error}; probe: {}", probe.stderr()));
    assert_eq!(page.status, 200, "{}", page.head);
    assert!(
        page.head.contains("x-content-type-options: nosniff"),
        "{}",
        page.head
    );
    assert!(
        page.body.contains("localnet_probe_build_info"),
        "{}",
        page.body
    );
    assert_eq!(page.server_cert, server.der);
    // A wrong password, or none: 401 and the scheme to use.
    for authorization in [
        Some(basic(USER, "guess")),
        Some(basic("mallory", PASSWORD)),
        None,
    ] {
        let refused = https_get(
            &link,
            &server_ca.pem(),
            Some(&client),
            authorization.as_deref(),
        )
        .expect("an answer");
        assert_eq!(refused.status, 401, "{}", refused.head);
        assert!(
            refused.head.contains("www-authenticate: basic"),
            "{}",
            refused.head
        );
        assert!(!refused.body.contains("localnet_probe"), "{}", refused.body);
    }
    // No client certificate, or one from another CA: no answer at all.
    for client in [None, Some(&stranger)] {
        let error = https_get(
            &link,
            &server_ca.pem(),
            client,
            Some(&basic(USER, PASSWORD)),
        )
        .err()
        .unwrap_or_else(|| panic!("served without a trusted client certificate"));
        // The server's alert, or the connection it closed after sending it (TLS 1.3 lets the
        // client write its request before the server has judged its certificate).
        assert!(
            ["alert", "reset", "closed", "Broken pipe"]
                .iter()
                .any(|said| error.contains(said)),
            "{error}"
        );
    }
    // Plain HTTP to the TLS port: no HTTP answer.
    let raw = plain_http_get(&link);
    assert!(
        !raw.starts_with(b"HTTP"),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    let mutual = "      ca_file: ca.pem\n      cert_file: client.pem\n      key_file: \
                  client-key.pem\n      server_name: 127.0.0.1\n";
    let jobs = [
        scrape_job("good", "https", mutual, PASSWORD),
        scrape_job("wrong_password", "https", mutual, "guess"),
        scrape_job(
            "wrong_ca",
            "https",
            &mutual.replace("ca_file: ca.pem", "ca_file: stranger-ca.pem"),
            PASSWORD,
        ),
        scrape_job(
            "no_client_cert",
            "https",
            "      ca_file: ca.pem\n",
            PASSWORD,
        ),
        scrape_job("plain_http", "http", "      ca_file: ca.pem\n", PASSWORD),
    ];
    let prometheus = Prometheus::start(&link.receiver, &prometheus_config(path, &jobs));
    let targets = wait_for_targets(&prometheus, jobs.len(), |targets| {
        job(targets, "good").0 == "up"
    });
    for (name, expected) in [
        ("wrong_password", "401"),
        ("wrong_ca", "certificate"),
        ("no_client_cert", ""),
        ("plain_http", ""),
    ] {
        let (health, error) = job(&targets, name);
        assert_eq!(health, "down", "{name}: {error}");
        assert!(error.contains(expected), "{name}: {error}");
    }
    // What the good job scraped is the probe's page.
    let info = prometheus
        .query("localnet_probe_build_info{job=\"good\"}")
        .expect("a query result");
    assert_eq!(
        info["data"]["result"].as_array().map(Vec::len),
        Some(1),
        "{info}"
    );

    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
}

#[test]
#[ignore = "needs root"]
fn an_expired_certificate_fails_and_a_rotated_one_is_served_without_restart() {
    let link = Link::new("tlsrot");
    let dir = TempDir::new("web-rotate");
    let path = dir.path();
    let ca = Ca::new("server CA");
    let expired = ca.leaf(ExtendedKeyUsagePurpose::ServerAuth, true);
    std::fs::write(path.join("ca.pem"), ca.pem()).expect("write ca.pem");
    std::fs::write(path.join("server.pem"), &expired.cert).expect("write server.pem");
    std::fs::write(path.join("server-key.pem"), &expired.key).expect("write the key");
    std::fs::write(path.join("web.yml"), web_config(false, PASSWORD)).expect("write web.yml");
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &[
            "--iface",
            RECEIVER_IF,
            "--metrics",
            ADDRESS,
            "--web-config",
            &path.join("web.yml").display().to_string(),
        ],
    );
    probe.wait_ready();
    let authorization = basic(USER, PASSWORD);
    let error = https_get(&link, &ca.pem(), None, Some(&authorization))
        .err()
        .expect("an expired certificate is refused");
    assert!(error.contains("expired"), "{error}");
    let jobs = [scrape_job(
        "good",
        "https",
        "      ca_file: ca.pem\n      server_name: 127.0.0.1\n",
        PASSWORD,
    )];
    let prometheus = Prometheus::start(&link.receiver, &prometheus_config(path, &jobs));
    let targets = wait_for_targets(&prometheus, 1, |_| true);
    let (health, error) = job(&targets, "good");
    assert_eq!(health, "down", "{error}");
    assert!(error.contains("expired"), "{error}");

    // Rotated as Kubernetes and certbot do, by renaming new files over the old ones.
    let renewed = ca.leaf(ExtendedKeyUsagePurpose::ServerAuth, false);
    replace(path, "server-key.pem", &renewed.key);
    replace(path, "server.pem", &renewed.cert);
    let page = https_get(&link, &ca.pem(), None, Some(&authorization))
        .unwrap_or_else(|error| panic!("{error}; probe: {}", probe.stderr()));
    assert_eq!(
        page.server_cert, renewed.der,
        "the next connection has the new certificate"
    );
    assert_eq!(page.status, 200, "{}", page.head);
    wait_for_targets(&prometheus, 1, |targets| job(targets, "good").0 == "up");

    // Broken later: the last good configuration stays, and it is said once, not per
    // connection.
    replace(path, "web.yml", "tls_server_config:\n  cert_file: [\n");
    for _ in 0..5 {
        let page = https_get(&link, &ca.pem(), None, Some(&authorization)).expect("served");
        assert_eq!(page.status, 200, "{}", page.head);
    }
    let said = probe.wait_until_said("keeping the last good web configuration");
    assert!(said.contains("web.yml"), "{said}");
    assert_eq!(
        probe
            .stderr()
            .matches("keeping the last good web configuration")
            .count(),
        1,
        "{}",
        probe.stderr()
    );
    // Fixed: loaded again, with the password it now names.
    replace(path, "web.yml", &web_config(false, "rotated too"));
    let refused = https_get(&link, &ca.pem(), None, Some(&authorization)).expect("an answer");
    assert_eq!(refused.status, 401, "{}", refused.head);
    let page =
        https_get(&link, &ca.pem(), None, Some(&basic(USER, "rotated too"))).expect("an answer");
    assert_eq!(page.status, 200, "{}", page.head);
    probe.wait_until_said("reloaded");

    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
}

/// Nothing is attached: the file is read first. No root needed.
#[test]
fn a_bad_web_config_at_start_ends_the_run_with_status_2() {
    let dir = TempDir::new("web-bad");
    let path = dir.path().join("web.yml");
    for (text, expected) in [
        (None, "cannot read"),
        (
            Some("tls_server_config:\n  cert_file: nowhere.pem\n  key_file: k.pem\n"),
            "nowhere.pem: cannot read",
        ),
        (
            Some("basic_auth_user:\n  a: b\n"),
            "unknown field `basic_auth_user`",
        ),
    ] {
        if let Some(text) = text {
            std::fs::write(&path, text).expect("write web.yml");
        }
        let output = Command::new(PROBE)
            .args(["run", "--plain", "--metrics", "127.0.0.1:0", "--web-config"])
            .arg(&path)
            .output()
            .expect("run localnet-probe");
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--web-config"), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        if text.is_none() {
            assert!(stderr.contains("web.yml"), "{stderr}");
        }
    }
    // A FIFO is refused at once, not waited on for a writer.
    std::fs::remove_file(&path).expect("remove web.yml");
    let made = Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let output = Command::new(PROBE)
        .args(["run", "--plain", "--metrics", "127.0.0.1:0", "--web-config"])
        .arg(&path)
        .output()
        .expect("run localnet-probe");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("web.yml: not a regular file"), "{stderr}");
}

/// A web configuration without a certificate serves plain HTTP, as the Go toolkit does, and
/// says so as a warning: who gave the file meant something by it.
#[test]
#[ignore = "needs root"]
fn a_web_config_without_a_certificate_warns_that_it_serves_plain_http() {
    let link = Link::new("webplain");
    let dir = TempDir::new("webplain");
    let path = dir.path().join("web.yml");
    std::fs::write(
        &path,
        format!(
            "basic_auth_users:\n  prom: '{}'\n",
            bcrypt::hash("secret", 6).expect("bcrypt")
        ),
    )
    .expect("write web.yml");
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &[
            "--metrics",
            "127.0.0.1:9464",
            "--web-config",
            path.to_str().expect("a UTF-8 path"),
        ],
    );
    probe.wait_ready();
    probe.wait_until_said("unencrypted: the web configuration gives no tls_server_config");
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
}
