//! `tls_server_config` → a rustls server configuration, with the *ring* provider. What rustls
//! cannot do (TLS 1.0 and 1.1, CBC and RSA key-exchange suites, P-521) is refused by name: a
//! security setting is never dropped silently.

use std::sync::Arc;

use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite, SupportedProtocolVersion,
    client::danger::HandshakeSignatureValid,
    crypto::{
        CryptoProvider, WebPkiSupportedAlgorithms,
        ring::{cipher_suite as suite, kx_group},
    },
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject as _},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};

use super::{
    Problem,
    file::{ClientAuthType, TlsServerConfig, TlsVersion},
    files::Files,
};

/// The TLS 1.2 suites by Go's names (`tls.CipherSuiteName`, and the short aliases Go accepts).
const TLS12_SUITES: &[(&str, SupportedCipherSuite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// The TLS 1.3 suites. Go does not let them be chosen and ignores them in `cipher_suites`;
/// here a list that names any of them restricts TLS 1.3 to those named.
const TLS13_SUITES: &[(&str, SupportedCipherSuite)] = &[
    ("TLS_AES_128_GCM_SHA256", suite::TLS13_AES_128_GCM_SHA256),
    ("TLS_AES_256_GCM_SHA384", suite::TLS13_AES_256_GCM_SHA384),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        suite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

pub(super) fn server_config(
    config: &TlsServerConfig,
    files: &mut Files,
) -> Result<ServerConfig, Problem> {
    if config.client_allowed_sans.is_some() {
        return Err(Problem::config(
            "tls_server_config.client_allowed_sans is not supported by localnet-probe; sign \
             the scrapers' certificates with a CA of their own (client_ca_file) instead",
        ));
    }
    let provider = Arc::new(provider(config)?);
    let versions = versions(config)?;
    let auth = config.client_auth_type.unwrap_or_default();
    let roots = client_roots(config, files)?;
    let verifier: Arc<dyn ClientCertVerifier> = match (auth, roots) {
        (ClientAuthType::NoClientCert, None) => WebPkiClientVerifier::no_client_auth(),
        (ClientAuthType::NoClientCert, Some(_)) => {
            return Err(Problem::config(
                "a client CA is given but client_auth_type is NoClientCert; set client_auth_type \
                 to RequireAndVerifyClientCert to check the scrapers' certificates",
            ));
        }
        (ClientAuthType::RequestClientCert, _) => Arc::new(AnyClientCert {
            mandatory: false,
            algorithms: provider.signature_verification_algorithms,
        }),
        (ClientAuthType::RequireAnyClientCert, _) => Arc::new(AnyClientCert {
            mandatory: true,
            algorithms: provider.signature_verification_algorithms,
        }),
        (auth, None) => {
            return Err(Problem::config(format!(
                "client_auth_type {auth:?} verifies client certificates, and no client_ca_file \
                 says against what"
            )));
        }
        (auth, Some(roots)) => {
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let builder = if auth == ClientAuthType::VerifyClientCertIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|error| Problem::config(format!("client verifier: {error}")))?
        }
    };
    let (chain, key) = certificate_and_key(config, files)?;
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|error| Problem::config(format!("TLS versions: {error}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|error| {
            Problem::config(format!(
                "the certificate and key do not go together: {error}"
            ))
        })?;
    // Go's default: the server's order of cipher suites wins.
    server.ignore_client_order = config.prefer_server_cipher_suites.unwrap_or(true);
    Ok(server)
}

/// The *ring* provider: it builds without cmake, which aws-lc-rs's needs here. rustls
/// deprecated it for its want of post-quantum key exchange, which nothing in the web
/// configuration format asks for (Go's `X25519MLKEM768` is refused by name).
pub(super) fn ring_provider() -> CryptoProvider {
    #[expect(deprecated, reason = "ring: no cmake at build; see above")]
    rustls::crypto::ring::default_provider()
}

/// *ring*'s suites and groups, cut to `cipher_suites` and `curve_preferences` in their order.
fn provider(config: &TlsServerConfig) -> Result<CryptoProvider, Problem> {
    let mut provider = ring_provider();
    if let Some(names) = &config.cipher_suites {
        let mut tls12 = Vec::new();
        let mut tls13 = Vec::new();
        for name in names {
            if let Some((_, found)) = TLS12_SUITES.iter().find(|(known, _)| known == name) {
                tls12.push(*found);
            } else if let Some((_, found)) = TLS13_SUITES.iter().find(|(known, _)| known == name) {
                tls13.push(*found);
            } else {
                return Err(Problem::config(format!(
                    "cipher suite {} is not offered by rustls; it offers {}",
                    super::shown(name),
                    known_names(TLS12_SUITES.iter().chain(TLS13_SUITES).map(|(n, _)| *n))
                )));
            }
        }
        if tls13.is_empty() {
            tls13 = TLS13_SUITES.iter().map(|(_, found)| *found).collect();
        }
        provider.cipher_suites = tls13.into_iter().chain(tls12).collect();
    }
    if let Some(names) = &config.curve_preferences {
        provider.kx_groups = names
            .iter()
            .map(|name| match name.as_str() {
                "X25519" => Ok(kx_group::X25519),
                "CurveP256" => Ok(kx_group::SECP256R1),
                "CurveP384" => Ok(kx_group::SECP384R1),
                _ => Err(Problem::config(format!(
                    "curve {} is not offered by rustls with ring; it offers X25519, CurveP256 \
                     and CurveP384",
                    super::shown(name)
                ))),
            })
            .collect::<Result<_, _>>()?;
        if provider.kx_groups.is_empty() {
            return Err(Problem::config("curve_preferences is empty"));
        }
    }
    Ok(provider)
}

fn known_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

/// `min_version` to `max_version`; rustls speaks TLS 1.2 and 1.3 only, so older versions are
/// refused rather than quietly not offered.
fn versions(config: &TlsServerConfig) -> Result<Vec<&'static SupportedProtocolVersion>, Problem> {
    let min = config.min_version.unwrap_or(TlsVersion::TLS12);
    let max = config.max_version.unwrap_or(TlsVersion::TLS13);
    for (key, version) in [("min_version", min), ("max_version", max)] {
        if version < TlsVersion::TLS12 {
            return Err(Problem::config(format!(
                "{key} {version:?}: localnet-probe speaks TLS 1.2 and 1.3 only (rustls); give \
                 TLS12 or TLS13"
            )));
        }
    }
    if min > max {
        return Err(Problem::config(format!(
            "min_version {min:?} is above max_version {max:?}"
        )));
    }
    Ok([
        (TlsVersion::TLS12, &rustls::version::TLS12),
        (TlsVersion::TLS13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(version, _)| (min..=max).contains(version))
    .map(|(_, supported)| supported)
    .collect())
}

fn certificate_and_key(
    config: &TlsServerConfig,
    files: &mut Files,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Problem> {
    let (chain, chain_from) = files.inline_or_file(
        "cert",
        config.cert.as_deref(),
        "cert_file",
        config.cert_file.as_deref(),
    )?;
    let (key, key_from) = files.inline_or_file(
        "key",
        config.key.as_deref(),
        "key_file",
        config.key_file.as_deref(),
    )?;
    let chain = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| chain_from.problem(format!("not PEM certificates: {error}")))?;
    if chain.is_empty() {
        return Err(chain_from.problem("holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|error| key_from.problem(format!("holds no PEM private key: {error}")))?;
    Ok((chain, key))
}

/// The CAs that client certificates are verified against, if any are given.
fn client_roots(
    config: &TlsServerConfig,
    files: &mut Files,
) -> Result<Option<RootCertStore>, Problem> {
    if config.client_ca.is_none() && config.client_ca_file.is_none() {
        return Ok(None);
    }
    let (pem, from) = files.inline_or_file(
        "client_ca",
        config.client_ca.as_deref(),
        "client_ca_file",
        config.client_ca_file.as_deref(),
    )?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate =
            certificate.map_err(|error| from.problem(format!("not PEM certificates: {error}")))?;
        roots
            .add(certificate)
            .map_err(|error| from.problem(format!("not a CA certificate: {error}")))?;
    }
    if roots.is_empty() {
        return Err(from.problem("holds no PEM certificate"));
    }
    Ok(Some(roots))
}

/// `RequestClientCert` and `RequireAnyClientCert`: any certificate is taken without a chain
/// check, as Go does, but the handshake's signature is still verified, so the client holds the
/// key of the certificate it sent.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
