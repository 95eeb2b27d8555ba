//! What the layers and the hub report through the `metrics` crate's facade
//! (feature `metrics`); without the feature every function here is empty
//! and compiles away. Names and labels are listed in the README.
#![allow(dead_code)] // each layer, behind its own feature, uses part of it

#[cfg(feature = "metrics")]
mod imp {
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

    pub(crate) fn keep_alive_comment() {
        counter!("tower_sse_keep_alive_comments_total").increment(1);
    }

    pub(crate) fn cors_refused() {
        counter!("tower_sse_cors_refused_total").increment(1);
    }

    /// The hub's metrics, with a `topic` label when the hub was built with
    /// per-topic labels (`None` otherwise).
    pub(crate) fn hub_subscribed(topic: Option<&str>) {
        match topic {
            Some(topic) => gauge!("tower_sse_hub_subscribers", "topic" => topic.to_owned()),
            None => gauge!("tower_sse_hub_subscribers"),
        }
        .increment(1.0);
    }

    pub(crate) fn hub_left(topic: Option<&str>) {
        match topic {
            Some(topic) => gauge!("tower_sse_hub_subscribers", "topic" => topic.to_owned()),
            None => gauge!("tower_sse_hub_subscribers"),
        }
        .decrement(1.0);
    }

    pub(crate) fn hub_published(topic: Option<&str>) {
        match topic {
            Some(topic) => counter!("tower_sse_hub_published_total", "topic" => topic.to_owned()),
            None => counter!("tower_sse_hub_published_total"),
        }
        .increment(1);
    }

    pub(crate) fn hub_replayed(topic: Option<&str>, events: u64) {
        match topic {
            Some(topic) => counter!("tower_sse_hub_replayed_total", "topic" => topic.to_owned()),
            None => counter!("tower_sse_hub_replayed_total"),
        }
        .increment(events);
    }

    pub(crate) fn hub_gap(topic: Option<&str>, reason: &'static str) {
        match topic {
            Some(topic) => counter!(
                "tower_sse_hub_gaps_total",
                "reason" => reason,
                "topic" => topic.to_owned()
            ),
            None => counter!("tower_sse_hub_gaps_total", "reason" => reason),
        }
        .increment(1);
    }

    pub(crate) fn hub_lagged(topic: Option<&str>) {
        match topic {
            Some(topic) => counter!("tower_sse_hub_lagged_total", "topic" => topic.to_owned()),
            None => counter!("tower_sse_hub_lagged_total"),
        }
        .increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    #[inline(always)]
    pub(crate) fn stream_opened() {}
    #[inline(always)]
    pub(crate) fn stream_closed(_reason: &'static str, _frames: u64, _bytes: u64) {}
    #[inline(always)]
    pub(crate) fn keep_alive_comment() {}
    #[inline(always)]
    pub(crate) fn cors_refused() {}
    #[inline(always)]
    pub(crate) fn hub_subscribed(_topic: Option<&str>) {}
    #[inline(always)]
    pub(crate) fn hub_left(_topic: Option<&str>) {}
    #[inline(always)]
    pub(crate) fn hub_published(_topic: Option<&str>) {}
    #[inline(always)]
    pub(crate) fn hub_replayed(_topic: Option<&str>, _events: u64) {}
    #[inline(always)]
    pub(crate) fn hub_gap(_topic: Option<&str>, _reason: &'static str) {}
    #[inline(always)]
    pub(crate) fn hub_lagged(_topic: Option<&str>) {}
}

#[allow(unused_imports)] // with `metrics` alone, nothing reports yet
pub(crate) use imp::*;
