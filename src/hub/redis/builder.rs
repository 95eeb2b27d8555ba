//! The Redis backend's settings on [`HubBuilder`].

use std::time::Duration;

use crate::hub::HubBuilder;

impl HubBuilder {
    /// Keeps topics in Redis Streams at `url` (`redis://host:port/db`),
    /// so that every instance of the app that uses the same Redis serves
    /// the same events with the same ids: a browser resumes on whichever
    /// instance its reconnect reaches. See the README's "Scaling out".
    ///
    /// The URL is `redis://[user[:password]@]host[:port][/db]` (port 6379
    /// and database 0 unless given; a password alone, `redis://:secret@host`,
    /// is Redis's `AUTH secret`, a user too is an ACL user). `rediss://`
    /// is the same over TLS, with the `redis-tls` feature (built without
    /// it, [`build`](HubBuilder::build) refuses the URL with
    /// [`HubConfigErrorKind::RedisTlsFeatureOff`](crate::hub::HubConfigErrorKind::RedisTlsFeatureOff)): the server's
    /// certificate must be valid for the URL's host and signed by a root
    /// the system trusts, or by the CA given to `redis_tls_root_ca`. A
    /// certificate that is not trusted fails every call with
    /// [`HubErrorKind::Unavailable`](crate::hub::HubErrorKind::Unavailable), whose text says so. The redis crate's
    /// `#insecure` (no check of the server's name) is refused
    /// ([`HubConfigErrorKind::RedisTls`](crate::hub::HubConfigErrorKind::RedisTls)). See the guide's "TLS" section
    /// (`docs/scaling-out.md`).
    ///
    /// Each topic is one stream, trimmed to about
    /// [`history`](HubBuilder::history) entries (Redis trims whole nodes of
    /// entries, so it keeps at least that many, up to about a hundred more);
    /// each instance keeps the latest `history` in memory, and resumes from
    /// those. [`max_age`](HubBuilder::max_age) applies to what each instance
    /// keeps in memory, not to the stream. The hub owns the keys under its
    /// [prefix](HubBuilder::redis_key_prefix): entries written by others are
    /// skipped and show as a gap.
    ///
    /// [`build`](HubBuilder::build) must then run inside a tokio runtime (it
    /// starts the instance's reader task); it does not connect, so an app
    /// starts while Redis is down and catches up when it comes. Default: no
    /// Redis (the memory backend).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis.url = Some(url.into());
        self
    }

    /// Trusts the CA certificates in `pem` (one or more `-----BEGIN
    /// CERTIFICATE-----` blocks; other blocks are skipped) for the
    /// `rediss://` URL given to [`redis`](HubBuilder::redis), instead of
    /// the system's roots: for a Redis whose certificate a private CA
    /// signed (your own, or the one a managed Redis gives out). The
    /// server's certificate must still be valid for the URL's host.
    ///
    /// [`build`](HubBuilder::build) refuses (with
    /// [`HubConfigErrorKind::RedisTls`](crate::hub::HubConfigErrorKind::RedisTls)) a `pem` that holds no
    /// certificate, or one that does not parse, and a CA given with a URL
    /// that is not `rediss://` (the app would believe it talks TLS).
    /// Default: the system's roots (the files of the `ca-certificates`
    /// package on Linux, read by rustls-native-certs at each connection;
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured).
    ///
    /// ```
    /// # async fn build() -> Result<tower_sse::hub::Hub, Box<dyn std::error::Error>> {
    /// use tower_sse::hub::Hub;
    ///
    /// // Inside the tokio runtime; nothing connects until the first use.
    /// let pem = std::fs::read("/etc/redis/ca.pem")?;
    /// let hub = Hub::builder()
    ///     .redis("rediss://:secret@redis.internal:6380")
    ///     .redis_tls_root_ca(pem)
    ///     .build()?;
    /// # Ok(hub)
    /// # }
    /// ```
    #[cfg(feature = "redis-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-tls")))]
    pub fn redis_tls_root_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.redis.tls.root_ca = Some(pem.into());
        self
    }

    /// Keeps topics in a Redis Cluster whose nodes (some or all of them)
    /// are `urls`, as [`redis`](HubBuilder::redis) does on one Redis:
    /// topics spread over the cluster's slots (each topic's stream and
    /// channel in one slot, by a hash tag: `tower-sse:{ticks}`), commands
    /// follow `MOVED` and `ASK`, and a failover is survived (what the old
    /// primary acknowledged and the new one never got shows as a gap, as
    /// any loss does). The reader subscribes to announcements on one node
    /// (a `PUBLISH` on a cluster reaches every node), the next one of
    /// `urls` after a failure, so give more than one. Not with
    /// [`redis`](HubBuilder::redis): [`build`](HubBuilder::build) refuses
    /// both, and an empty list
    /// ([`HubConfigErrorKind::RedisUrl`](crate::hub::HubConfigErrorKind::RedisUrl)).
    /// A key prefix with braces would make its own hash tag and put every
    /// topic in one slot: keep braces out of it. Default: no cluster.
    #[cfg(feature = "redis-cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-cluster")))]
    pub fn redis_cluster<I, U>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        self.redis.cluster = Some(urls.into_iter().map(Into::into).collect());
        self
    }

    /// The prefix of the hub's Redis keys: topic `ticks` is the stream
    /// `tower-sse:{ticks}` (the braces are a hash tag, which keeps each
    /// topic in one slot of a Redis Cluster), announced on the channel of
    /// the same name. Hubs that share a prefix share topics. Default:
    /// `tower-sse:`.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.redis.prefix = prefix.into();
        self
    }

    /// How long a publish, or the loading of a topic new to this instance,
    /// may wait for Redis (connecting included) before it fails with
    /// [`HubErrorKind::Unavailable`](crate::hub::HubErrorKind::Unavailable). Longer than zero, at most
    /// 60 seconds. Default: 2 seconds.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.redis.timeout = timeout;
        self
    }

    /// How long the instance's reader may fail to read from Redis before
    /// the hub gives up on it for now: subscribers that have read
    /// everything get a jittered `retry:` (from
    /// [`reconnect_delay`](HubBuilder::reconnect_delay)) and end
    /// (`CloseReason::Unavailable`), and new subscribes are refused with
    /// [`HubErrorKind::Unavailable`](crate::hub::HubErrorKind::Unavailable) (answered with a `retry:`), until the
    /// reader reads again. Within the grace, subscribers wait and get
    /// everything Redis still holds once it is back. Default: 5 seconds.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_outage_grace(mut self, grace: Duration) -> Self {
        self.redis.grace = grace;
        self
    }

    /// A topic's stream is deleted by Redis once nothing was published to
    /// it for `ttl` (renewed on every publish), so that topics nobody uses
    /// any more do not stay in Redis forever; `None` keeps them. A browser
    /// that comes back later gets a gap event (`restarted`). Longer than
    /// zero, at most 10 years. Default: 24 hours.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_key_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.redis.key_ttl = ttl;
        self
    }

    /// How long a run on Redis outlives its producer's instance: the
    /// instance renews its lease on each of its runs (with each
    /// [`Run::send`](crate::hub::Run::send), and every third of the lease
    /// while the run sends nothing); an instance that is killed or cut
    /// from Redis stops renewing, and once the lease lapses, the next
    /// instance to look (one whose followers read nothing for a third of a
    /// lease looks every third of a lease; any follow looks) ends the run as
    /// failed for every follower. Shorter tells followers sooner, and costs
    /// a renewal more often for runs that send nothing for long. Keep it
    /// several times [`redis_timeout`](HubBuilder::redis_timeout): a
    /// renewal that waits for a slow Redis must still land within it.
    /// Between 300 milliseconds and 10 minutes, else
    /// [`build`](HubBuilder::build) refuses it
    /// ([`HubConfigErrorKind::RedisOutOfRange`](crate::hub::HubConfigErrorKind::RedisOutOfRange)).
    /// Default: 10 seconds.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_run_lease(mut self, lease: Duration) -> Self {
        self.redis.run_lease = lease;
        self
    }
}
