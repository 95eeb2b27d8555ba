//! What the layers and the hub report through the `metrics` crate's facade
//! (feature `metrics`); without the feature every function here is empty
//! and compiles away. Names and labels are listed in `docs/metrics.md`.

#[cfg(all(feature = "layers", feature = "metrics"))]
mod layers {
    use metrics::{counter, gauge};

    pub(crate) fn stream_opened() {
        gauge!("tower_sse_streams_open").increment(1.0);
    }

    pub(crate) fn stream_closed(reason: &'static str, frames: u64, bytes: u64) {
        gauge!("tower_sse_streams_open").decrement(1.0);
        counter!("tower_sse_streams_closed_total", "reason" => reason).increment(1);
        counter!("tower_sse_frames_written_total").increment(frames);
        counter!("tower_sse_bytes_written_total").increment(bytes);
    }

    pub(crate) fn stream_failed(kind: &'static str) {
        counter!("tower_sse_stream_failures_total", "kind" => kind).increment(1);
    }

    pub(crate) fn keep_alive_comment() {
        counter!("tower_sse_keep_alive_comments_total").increment(1);
    }

    pub(crate) fn cors_refused() {
        counter!("tower_sse_cors_refused_total").increment(1);
    }
}

#[cfg(all(feature = "layers", not(feature = "metrics")))]
mod layers {
    #[inline(always)]
    pub(crate) fn stream_opened() {}
    #[inline(always)]
    pub(crate) fn stream_closed(_reason: &'static str, _frames: u64, _bytes: u64) {}
    pub(crate) fn stream_failed(_kind: &'static str) {}
    #[inline(always)]
    pub(crate) fn keep_alive_comment() {}
    #[inline(always)]
    pub(crate) fn cors_refused() {}
}

#[cfg(all(feature = "hub", feature = "metrics"))]
mod hub {
    use metrics::{counter, gauge};
    /// A hub topic's metrics, registered once when the topic is made (with
    /// a `topic` label when the hub labels by topic), so that a publish or
    /// a subscribe costs one atomic operation and no label building.
    pub(crate) struct TopicMetrics {
        subscribers: metrics::Gauge,
        published: metrics::Counter,
        replayed: metrics::Counter,
        /// By reason: history-truncated, unknown-id, restarted.
        gaps: [metrics::Counter; 3],
        lagged: metrics::Counter,
    }

    impl TopicMetrics {
        pub(crate) fn new(topic: Option<&str>) -> Self {
            let topic: Vec<metrics::Label> = topic
                .map(|topic| metrics::Label::new("topic", topic.to_owned()))
                .into_iter()
                .collect();
            let gap = |reason: &'static str| {
                let mut labels = topic.clone();
                labels.push(metrics::Label::new("reason", reason));
                counter!("tower_sse_hub_gaps_total", labels)
            };
            Self {
                subscribers: gauge!("tower_sse_hub_subscribers", topic.clone()),
                published: counter!("tower_sse_hub_published_total", topic.clone()),
                replayed: counter!("tower_sse_hub_replayed_total", topic.clone()),
                gaps: [
                    gap("history-truncated"),
                    gap("unknown-id"),
                    gap("restarted"),
                ],
                lagged: counter!("tower_sse_hub_lagged_total", topic),
            }
        }

        pub(crate) fn subscribed(&self) {
            self.subscribers.increment(1.0);
        }

        pub(crate) fn left(&self) {
            self.subscribers.decrement(1.0);
        }

        pub(crate) fn published(&self) {
            self.published.increment(1);
        }

        pub(crate) fn replayed(&self, events: u64) {
            self.replayed.increment(events);
        }

        /// `reason`: `GapReason::index` (history-truncated, unknown-id,
        /// restarted).
        pub(crate) fn gap(&self, reason: usize) {
            self.gaps[reason].increment(1);
        }

        pub(crate) fn lagged(&self) {
            self.lagged.increment(1);
        }
    }

    /// A set subscription refused by its client's bound.
    pub(crate) fn client_refused() {
        counter!("tower_sse_hub_client_refusals_total").increment(1);
    }
}

#[cfg(all(feature = "hub", not(feature = "metrics")))]
mod hub {
    /// Without the feature: nothing to register, nothing to report.
    pub(crate) struct TopicMetrics;

    impl TopicMetrics {
        #[inline(always)]
        pub(crate) fn new(_topic: Option<&str>) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn subscribed(&self) {}
        #[inline(always)]
        pub(crate) fn left(&self) {}
        #[inline(always)]
        pub(crate) fn published(&self) {}
        #[inline(always)]
        pub(crate) fn replayed(&self, _events: u64) {}
        #[inline(always)]
        pub(crate) fn gap(&self, _reason: usize) {}
        #[inline(always)]
        pub(crate) fn lagged(&self) {}
    }

    #[inline(always)]
    pub(crate) fn client_refused() {}
}

#[cfg(feature = "hub")]
pub(crate) use hub::{client_refused, TopicMetrics};
#[cfg(feature = "layers")]
pub(crate) use layers::*;
