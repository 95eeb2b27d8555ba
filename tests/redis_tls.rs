//! The hub on Redis over TLS (feature `redis-tls`), against a real
//! `redis-server` that speaks TLS only (`--port 0 --tls-port`), with a
//! certificate for 127.0.0.1 signed by a CA this test makes: two instances
//! publish and resume through it; a CA that did not sign the server's
//! certificate, or the system's roots (which do not hold the test's CA),
//! fail every call at once with an error that says why, as does a
//! certificate for another host name; the system's roots
//! are what is trusted when the app gives no CA; and TLS settings that
//! cannot work are refused when the hub is built.
//!
//! Without `redis-server` the tests that need one say SKIPPED; with
//! `TOWER_SSE_REQUIRE_REDIS=1` (set by `.ci/run`) they fail.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::{Certificates, Persistence, RedisServer};
use futures_util::StreamExt;
use tower_sse::{
    hub::{Hub, HubBuilder, HubConfigErrorKind, HubErrorKind, Start, Subscription, POSITION_EVENT},
    Event,
};

/// Set in the child process of
/// [`without_a_root_ca_the_system_s_roots_are_trusted`]: the URL of the
/// server to reach through the system's roots.
const CHILD_URL: &str = "TOWER_SSE_TLS_CHILD_URL";

/// A hub on `url` trusting `ca`, under a prefix of its own.
fn hub(url: &str, ca: Option<&str>, prefix: &str) -> Hub {
    builder(url, ca, prefix).build().expect("the hub builds")
}

fn builder(url: &str, ca: Option<&str>, prefix: &str) -> HubBuilder {
    let builder = Hub::builder()
        .redis(url)
        .redis_key_prefix(prefix)
        .redis_timeout(Duration::from_secs(10));
    match ca {
        Some(ca) => builder.redis_tls_root_ca(ca),
        None => builder,
    }
}

fn prefix() -> String {
    format!("tls{}:", common::random_tag())
}

/// The subscription's next event as text, within 10 s.
async fn next(subscription: &mut Subscription) -> String {
    let event = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream goes on");
    String::from_utf8(event.as_bytes().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_publish_and_resume_over_tls() {
    let Some(redis) = RedisServer::start_tls(Persistence::None) else {
        return;
    };
    let prefix = prefix();
    let one = hub(&redis.url(), Some(redis.ca()), &prefix);
    let two = hub(&redis.url(), Some(redis.ca()), &prefix);

    // A subscriber on the second instance, live from the topic's start.
    let mut live = two.subscribe("ticks", None).await.expect("subscribed");
    assert_eq!(live.how_it_started(), Start::Fresh);
    assert!(next(&mut live)
        .await
        .starts_with(&format!("event: {POSITION_EVENT}\n")));

    // Published on the first, seen on the second, in order, with its ids.
    let mut ids = Vec::new();
    for n in 1..=3 {
        let id = one
            .publish("ticks", Event::new().data(format!("tick {n}")))
            .await
            .expect("published over TLS");
        ids.push(id.to_string());
    }
    for (n, id) in (1..=3).zip(&ids) {
        assert_eq!(
            next(&mut live).await,
            format!("data: tick {n}\nid: {id}\n\n")
        );
    }

    // A browser that saw the first event on the second instance resumes on
    // the first: exactly the two after it.
    let mut resumed = one
        .subscribe("ticks", Some(&ids[0]))
        .await
        .expect("resumed over TLS");
    assert_eq!(resumed.how_it_started(), Start::Exact { replayed: 2 });
    for (n, id) in (2..=3).zip(&ids[1..]) {
        assert_eq!(
            next(&mut resumed).await,
            format!("data: tick {n}\nid: {id}\n\n")
        );
    }
}

/// A publish and a subscribe on `hub` both fail at once, long before the
/// hub's timeout, as unavailable, with the Redis client's reason: the
/// server's certificate is not trusted.
async fn assert_untrusted(hub: &Hub) {
    let started = Instant::now();
    let error = hub
        .publish("ticks", Event::new().data("x"))
        .await
        .expect_err("an untrusted server is not published to");
    assert_eq!(error.kind(), HubErrorKind::Unavailable, "{error}");
    assert_says_untrusted(&error.to_string());
    let error = hub
        .subscribe("ticks", None)
        .await
        .expect_err("an untrusted server is not subscribed to");
    assert_eq!(error.kind(), HubErrorKind::Unavailable, "{error}");
    assert_says_untrusted(&error.to_string());
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the refusal took {took:?}: it waited for the timeout (10 s) instead of failing"
    );
}

fn assert_says_untrusted(text: &str) {
    assert!(
        text.contains("invalid peer certificate") && text.contains("UnknownIssuer"),
        "the error says the certificate was not trusted: {text}"
    );
    assert!(!text.contains("no answer"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_fails_every_call_at_once_saying_so() {
    let Some(redis) = RedisServer::start_tls(Persistence::None) else {
        return;
    };
    let other = Certificates::generate("another CA");
    let hub = hub(&redis.url(), Some(&other.ca), &prefix());
    assert_untrusted(&hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_for_another_host_fails_every_call_saying_so() {
    let certificates = Certificates::generate_for("a CA", &["redis.internal"]);
    let ca = certificates.ca.clone();
    let Some(redis) = RedisServer::start_tls_with(Persistence::None, certificates) else {
        return;
    };
    let hub = hub(&redis.url(), Some(&ca), &prefix());
    let error = hub
        .publish("ticks", Event::new().data("x"))
        .await
        .expect_err("a server named otherwise is not published to");
    assert_eq!(error.kind(), HubErrorKind::Unavailable, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("invalid peer certificate")
            && text.contains("certificate not valid for name \"127.0.0.1\""),
        "the error says the certificate names another host: {text}"
    );
}

/// Without a root CA the hub trusts the system's roots: the test's CA is
/// not among them, so every call fails as untrusted; with the test's CA
/// as the system's (`SSL_CERT_FILE`, read by rustls-native-certs, in a
/// child process so that no other test sees it), the same URL works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_root_ca_the_system_s_roots_are_trusted() {
    let Some(redis) = RedisServer::start_tls(Persistence::None) else {
        return;
    };
    assert_untrusted(&hub(&redis.url(), None, &prefix())).await;

    let ca_file = std::env::temp_dir().join(format!(
        "tower-sse-system-ca-{}-{}.pem",
        std::process::id(),
        common::random_tag()
    ));
    std::fs::write(&ca_file, redis.ca()).unwrap();
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_publishes_through_the_system_s_roots",
            "--ignored",
            "--nocapture",
        ])
        .env("SSL_CERT_FILE", &ca_file)
        .env_remove("SSL_CERT_DIR")
        .env(CHILD_URL, redis.url())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_file(&ca_file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Run by [`without_a_root_ca_the_system_s_roots_are_trusted`] in a
/// process of its own; passes at once when run otherwise.
#[tokio::test]
#[ignore = "run by without_a_root_ca_the_system_s_roots_are_trusted"]
async fn child_publishes_through_the_system_s_roots() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let hub = hub(&url, None, &prefix());
    hub.publish("ticks", Event::new().data("x"))
        .await
        .expect("published through the system's roots");
}

#[tokio::test]
async fn tls_settings_that_cannot_work_are_refused_when_built() {
    let ca = Certificates::generate("a CA").ca;
    let server = Certificates::generate("a CA");
    for (builder, why) in [
        (
            builder("rediss://127.0.0.1:1", Some(""), "p:"),
            "an empty PEM",
        ),
        (
            builder("rediss://127.0.0.1:1", Some("not a certificate"), "p:"),
            "not PEM",
        ),
        (
            builder(
                "rediss://127.0.0.1:1",
                Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                "p:",
            ),
            "a certificate that does not parse",
        ),
        (
            builder("rediss://127.0.0.1:1", Some(&server.key), "p:"),
            "a key, not a certificate",
        ),
        (
            builder("redis://127.0.0.1:1", Some(&ca), "p:"),
            "a CA for a URL without TLS",
        ),
        (
            builder("rediss://127.0.0.1:1/#insecure", None, "p:"),
            "#insecure",
        ),
    ] {
        let error = builder.build().expect_err(why);
        assert_eq!(error.kind(), HubConfigErrorKind::RedisTls, "{why}: {error}");
        assert!(error.to_string().contains("redis_tls_root_ca"), "{error}");
        // The builder comes back with what was set, to fix and build again.
        let fixed = error
            .into_builder()
            .redis("rediss://127.0.0.1:1")
            .redis_tls_root_ca(ca.clone());
        fixed.build().expect("fixed, it builds");
    }
    // A bundle of several CAs, with other sections between them, builds.
    let bundle = format!("{ca}\n{}\n{}", server.key, server.ca);
    builder("rediss://localhost:1", Some(&bundle), "p:")
        .build()
        .expect("a bundle builds");
    // Without a CA, a TLS URL builds (the system's roots).
    builder("rediss://localhost:1", None, "p:")
        .build()
        .expect("the system's roots");
}
