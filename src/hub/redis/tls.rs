//! The Redis client from the hub's URL: plain (`redis://`), or over TLS
//! (`rediss://`) with the `redis-tls` feature, checking the server's
//! certificate against the system's roots or against the CA the app gave
//! ([`HubBuilder::redis_tls_root_ca`](crate::hub::HubBuilder)).
//!
//! Everything that can be wrong here is found when the hub is built: a
//! `rediss://` URL without the feature, a root CA that holds no
//! certificate, a root CA given for a URL without TLS, and the redis
//! crate's `#insecure` (no check of the server's name), which this crate
//! does not offer. What only a connection can tell (the server's
//! certificate is not trusted) is the error of every call, as the Redis
//! client says it.

use redis::Client;

use crate::hub::HubConfigErrorKind;

/// The TLS settings of the Redis backend, as the builder records them.
#[derive(Clone, Default)]
pub(in crate::hub) struct TlsSettings {
    /// PEM: the CA certificates to trust instead of the system's roots.
    #[cfg(feature = "redis-tls")]
    pub(in crate::hub) root_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("TlsSettings");
        #[cfg(feature = "redis-tls")]
        out.field(
            "root_ca",
            &self
                .root_ca
                .as_ref()
                .map(|pem| format!("{} bytes of PEM", pem.len())),
        );
        out.finish()
    }
}

/// Whether `url` asks for TLS: its scheme is `rediss` (or `valkeys`, which
/// the redis crate reads the same way), in any case, as the URL parser
/// reads it (leading spaces and control characters skipped). With the
/// feature, the redis crate's parsed address says it instead.
#[cfg(any(test, not(feature = "redis-tls")))]
fn asks_for_tls(url: &str) -> bool {
    let url = url.trim_start_matches(|c: char| c <= ' ');
    url.split_once(':').is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
    })
}

/// The client of the Redis Cluster whose nodes are `urls` (each checked
/// with `client` before), commands bounded by `timeout`.
#[cfg(feature = "redis-cluster")]
pub(in crate::hub) fn cluster_client(
    urls: &[String],
    tls: &TlsSettings,
    timeout: std::time::Duration,
) -> Result<redis::cluster::ClusterClient, HubConfigErrorKind> {
    let builder = redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
        .connection_timeout(timeout)
        .response_timeout(timeout);
    #[cfg(feature = "redis-tls")]
    let builder = match &tls.root_ca {
        Some(pem) => builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        }),
        None => builder,
    };
    // Without TLS there is nothing in the settings for a cluster.
    #[cfg(not(feature = "redis-tls"))]
    let _ = tls;
    builder.build().map_err(|_| HubConfigErrorKind::RedisUrl)
}

/// The client for `url`, or which setting is wrong.
#[cfg(not(feature = "redis-tls"))]
pub(in crate::hub) fn client(url: &str, _tls: &TlsSettings) -> Result<Client, HubConfigErrorKind> {
    if asks_for_tls(url) {
        return Err(HubConfigErrorKind::RedisTlsFeatureOff);
    }
    Client::open(url).map_err(|_| HubConfigErrorKind::RedisUrl)
}

/// The client for `url`, or which setting is wrong.
#[cfg(feature = "redis-tls")]
pub(in crate::hub) fn client(url: &str, tls: &TlsSettings) -> Result<Client, HubConfigErrorKind> {
    use redis::ConnectionAddr;

    let client = Client::open(url).map_err(|_| HubConfigErrorKind::RedisUrl)?;
    let insecure = match client.get_connection_info().addr() {
        ConnectionAddr::TcpTls { insecure, .. } => *insecure,
        // A root CA for a connection that does not use TLS: the app
        // believes it talks TLS, and it would not.
        _ if tls.root_ca.is_some() => return Err(HubConfigErrorKind::RedisTls),
        _ => return Ok(client),
    };
    if insecure {
        return Err(HubConfigErrorKind::RedisTls);
    }
    let client = match &tls.root_ca {
        Some(pem) => {
            if !is_root_ca(pem) {
                return Err(HubConfigErrorKind::RedisTls);
            }
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            };
            Client::build_with_tls(client.get_connection_info().clone(), certificates)
                .map_err(|_| HubConfigErrorKind::RedisTls)?
        }
        None => client,
    };
    crypto_provider();
    Ok(client)
}

/// Whether `pem` holds at least one certificate, and every certificate in
/// it is one rustls takes as a root (other PEM sections, such as a key,
/// are skipped). The redis crate skips a PEM without certificates, which
/// would then trust nothing at all: every connection would fail.
#[cfg(feature = "redis-tls")]
fn is_root_ca(pem: &[u8]) -> bool {
    use rustls::pki_types::{pem::PemObject, CertificateDer};

    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let added = certificate.map(|certificate| roots.add(certificate));
        if !matches!(added, Ok(Ok(()))) {
            return false;
        }
    }
    !roots.is_empty()
}

/// Makes sure rustls has a crypto provider for the process when the redis
/// crate asks for one (it builds each connection's TLS settings with the
/// process's default provider): `ring`'s, unless the app installed one.
/// rustls installs `ring`'s by itself when it is the only provider built
/// in; when another is built in too (an app whose rustls has `aws-lc-rs`),
/// rustls would panic at the first connection instead, in the hub's task,
/// so the hub installs `ring`'s when it is built. An app that wants another
/// provider installs it before building the hub.
///
/// `ring` because it builds quickly everywhere with a C compiler alone (no
/// cmake, no OpenSSL). rustls 0.23.48 deprecated `ring::default_provider`
/// because `ring` has no post-quantum key exchange; rustls still picks it
/// itself in the same case (above), and an app that wants post-quantum
/// key exchange installs `aws-lc-rs`'s provider first.
#[cfg(feature = "redis-tls")]
fn crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Fails only when another thread installed one meanwhile: then
        // that one is used.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_urls_are_told_apart_from_plain_ones() {
        for url in [
            "rediss://127.0.0.1:6380",
            "REDISS://cache.example.com",
            "  rediss://user:pass@host/0",
            "valkeys://host",
        ] {
            assert!(asks_for_tls(url), "{url}");
        }
        for url in [
            "redis://127.0.0.1:6379",
            "redis://rediss:6379",
            "unix:///run/redis.sock",
            "redis+unix:///run/redis.sock",
            "rediss",
            "",
        ] {
            assert!(!asks_for_tls(url), "{url}");
        }
    }

    /// Without the feature, a `rediss://` URL names the feature to turn
    /// on (run with `cargo test --features redis`; CI's `--all-features`
    /// runs the test above, which decides it).
    #[cfg(not(feature = "redis-tls"))]
    #[tokio::test]
    async fn a_tls_url_without_the_feature_names_the_feature() {
        let error = crate::hub::Hub::builder()
            .redis("rediss://127.0.0.1:6380")
            .build()
            .unwrap_err();
        assert_eq!(error.kind(), HubConfigErrorKind::RedisTlsFeatureOff);
        let text = error.to_string();
        assert!(text.contains("`redis-tls` feature"), "{text}");
        assert_eq!(
            client("redis://127.0.0.1:6379", &TlsSettings::default()).map(drop),
            Ok(())
        );
    }

    /// What `build` says for each TLS refusal, with or without the feature.
    #[test]
    fn tls_refusals_say_what_to_change() {
        for (kind, says) in [
            (
                HubConfigErrorKind::RedisTlsFeatureOff,
                "rediss:// needs the `redis-tls` feature",
            ),
            (HubConfigErrorKind::RedisTls, "redis_tls_root_ca"),
        ] {
            let error = crate::hub::HubConfigError {
                kind,
                builder: Box::new(crate::hub::Hub::builder()),
            };
            let text = error.to_string();
            assert!(text.contains(says), "{text}");
        }
    }

    #[cfg(feature = "redis-tls")]
    #[test]
    fn a_root_ca_must_hold_a_certificate() {
        assert!(!is_root_ca(b""));
        assert!(!is_root_ca(b"not a certificate"));
        assert!(!is_root_ca(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ));
        assert!(!is_root_ca(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        ));
    }
}
