//! The ids the hub gives events. The memory backend's are
//! `<epoch>-<sequence>`, the epoch in lowercase hexadecimal and the
//! sequence in decimal, both without leading zeros (`3fa9c0d2e1b7-42`).
//! The Redis backend's are Redis stream ids, `<milliseconds>-<sequence>`,
//! both decimal (`1764517200000-0`).

use std::fmt;

/// The longest `Last-Event-ID` the hub reads: longer ones are unknown ids,
/// refused before any parsing. The hub's own ids are at most 33 bytes.
pub const MAX_LAST_EVENT_ID_LEN: usize = 64;

/// Epochs are 48 bits: 12 hexadecimal digits at most.
pub(super) const EPOCH_MASK: u64 = (1 << 48) - 1;

/// The id the hub gave a published event.
///
/// Strictly increasing within a topic's life; the epoch changes whenever
/// the topic is made anew (a new hub, a new process, or a topic dropped
/// while idle and published to again), so an id from before can never be
/// mistaken for a new one. Its text form ([`Display`](fmt::Display)) is what
/// the browser sees and sends back in `Last-Event-ID`; treat it as opaque.
///
/// With the Redis backend (feature `redis`) it is the Redis stream id of the
/// event's entry: the same on every instance, so a browser resumes on
/// whichever instance its reconnect reaches.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId {
    /// The epoch; for a stream id, its milliseconds.
    pub(super) epoch: u64,
    pub(super) seq: u64,
    /// A Redis stream id (both parts decimal).
    pub(super) stream: bool,
}

impl EventId {
    /// An id of the memory backend.
    pub(super) fn memory(epoch: u64, seq: u64) -> Self {
        Self {
            epoch,
            seq,
            stream: false,
        }
    }

    /// Reads a log's id, `<ms>-<seq>` in decimal without leading zeros.
    pub(super) fn parse_log(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-')?;
        let canonical = |digits: &str| {
            !digits.is_empty()
                && digits.len() <= 20
                && (digits.len() == 1 || !digits.starts_with('0'))
                && digits.bytes().all(|b| b.is_ascii_digit())
        };
        if !canonical(ms) || !canonical(seq) {
            return None;
        }
        Some(Self::from_log(ms.parse().ok()?, seq.parse().ok()?))
    }

    /// An id of a backend's log: its milliseconds and sequence.
    pub(super) fn from_log(ms: u64, seq: u64) -> Self {
        Self {
            epoch: ms,
            seq,
            stream: true,
        }
    }

    /// The event's place in its topic with the memory backend: 1 for the
    /// first event published to the topic since it was made, then 2, 3, ...
    /// With the Redis backend, the sequence part of the stream id (its place
    /// among the entries added in the same millisecond).
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// Writes the text form into `buf` and returns it.
    ///
    /// By hand, not with `write!`: every publish writes one, and the
    /// formatting machinery cost several hundred instructions each.
    pub(super) fn write<'a>(&self, buf: &'a mut [u8; 48]) -> &'a [u8] {
        // Two numbers of 20 digits at most and a dash fit in 48 bytes:
        // written from the end, the sequence then the epoch.
        let mut at = put_digits(buf, 48, self.seq, 10) - 1;
        buf[at] = b'-';
        at = put_digits(buf, at, self.epoch, if self.stream { 10 } else { 16 });
        &buf[at..]
    }

    /// The length of the text `write` writes, counted without writing it
    /// (a set looks for a stored event's id line by it, once per event).
    pub(super) fn text_len(&self) -> usize {
        fn digits(n: u64, radix: u64) -> usize {
            match radix {
                16 => (u64::BITS - (n | 1).leading_zeros()).div_ceil(4) as usize,
                _ => n.checked_ilog10().unwrap_or(0) as usize + 1,
            }
        }
        digits(self.epoch, if self.stream { 10 } else { 16 }) + 1 + digits(self.seq, 10)
    }

    /// Reads an id in the hub's own form; anything else (another form,
    /// leading zeros, too long) is `None`.
    pub(super) fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_LAST_EVENT_ID_LEN {
            return None;
        }
        let (epoch, seq) = text.split_once('-')?;
        let canonical = |digits: &str, max: usize, hex: bool| {
            !digits.is_empty()
                && digits.len() <= max
                && (digits.len() == 1 || !digits.starts_with('0'))
                && digits
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (hex && (b'a'..=b'f').contains(&b)))
        };
        if !canonical(epoch, 12, true) || !canonical(seq, 20, false) {
            return None;
        }
        Some(Self::memory(
            u64::from_str_radix(epoch, 16).ok()?,
            seq.parse().ok()?,
        ))
    }
}

/// A Redis stream id, `<milliseconds>-<sequence>`, ordered as Redis orders
/// them.
#[cfg(hub_log)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct StreamId {
    pub(super) ms: u64,
    pub(super) seq: u64,
}

#[cfg(hub_log)]
impl StreamId {
    /// `0-0`: before every entry (what an entry without a predecessor
    /// records as its previous id).
    pub(super) const ZERO: Self = Self { ms: 0, seq: 0 };

    /// Reads `<ms>-<seq>` in decimal without leading zeros; anything else
    /// is `None`.
    pub(super) fn parse(text: &[u8]) -> Option<Self> {
        if text.len() > MAX_LAST_EVENT_ID_LEN {
            return None;
        }
        let id = EventId::parse_log(std::str::from_utf8(text).ok()?)?;
        Some(Self {
            ms: id.epoch,
            seq: id.seq,
        })
    }

    pub(super) fn event_id(self) -> EventId {
        EventId {
            epoch: self.ms,
            seq: self.seq,
            stream: true,
        }
    }
}

#[cfg(hub_log)]
impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Writes `n` in `radix` (10 or 16, lowercase) to end just before `end`
/// in `buf`, without leading zeros; returns where it starts.
pub(super) fn put_digits(buf: &mut [u8], end: usize, mut n: u64, radix: u64) -> usize {
    let mut at = end;
    loop {
        at -= 1;
        buf[at] = b"0123456789abcdef"[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            return at;
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0; 48];
        // Our own digits and a dash: always UTF-8.
        f.write_str(std::str::from_utf8(self.write(&mut buf)).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_exactly_what_they_write() {
        for (epoch, seq) in [(0, 0), (1, 1), (EPOCH_MASK, u64::MAX), (0xabc, 42)] {
            let id = EventId::memory(epoch, seq);
            let mut buf = [0; 48];
            let text = std::str::from_utf8(id.write(&mut buf)).unwrap().to_owned();
            assert_eq!(text, id.to_string());
            assert_eq!(EventId::parse(&text), Some(id), "{text}");
        }
        // Written by hand: the same text as `format!` at every digit count,
        // both radixes, both kinds.
        let mut numbers = vec![0, 9, 10, 15, 16, 99, 100, 255, 256, u64::MAX];
        numbers.extend((1..64).flat_map(|bits| [(1u64 << bits) - 1, 1 << bits]));
        numbers.extend((1..20).map(|digits| 10u64.pow(digits)));
        for &a in &numbers {
            for &b in &numbers {
                let mut buf = [0; 48];
                let memory = EventId::memory(a & EPOCH_MASK, b);
                assert_eq!(
                    memory.write(&mut buf),
                    format!("{:x}-{b}", a & EPOCH_MASK).as_bytes()
                );
                let stream = EventId::from_log(a, b);
                assert_eq!(stream.write(&mut buf), format!("{a}-{b}").as_bytes());
            }
        }
    }

    #[test]
    fn anything_but_the_hub_s_own_form_is_not_an_id() {
        for text in [
            "",
            "-",
            "1",
            "abc",
            "a-",
            "-1",
            "A-1",
            "0a-1",
            "a-01",
            "a-+1",
            "a-1-2",
            "a--1",
            "g-1",
            "a-1 ",
            " a-1",
            "a-18446744073709551616",
            "1234567890abc-1",
            "é-1",
            "a-１",
        ] {
            assert_eq!(EventId::parse(text), None, "{text:?}");
        }
        let long = format!("a-{}", "1".repeat(MAX_LAST_EVENT_ID_LEN));
        assert_eq!(EventId::parse(&long), None);
    }

    #[cfg(hub_log)]
    #[test]
    fn stream_ids_read_only_redis_s_own_form() {
        for (text, id) in [
            ("0-0", (0, 0)),
            ("1764517200000-0", (1_764_517_200_000, 0)),
            (
                "18446744073709551615-18446744073709551615",
                (u64::MAX, u64::MAX),
            ),
        ] {
            let parsed = StreamId::parse(text.as_bytes()).unwrap();
            assert_eq!((parsed.ms, parsed.seq), id);
            assert_eq!(parsed.to_string(), text);
            assert_eq!(parsed.event_id().to_string(), text);
            let mut buf = [0; 48];
            assert_eq!(parsed.event_id().write(&mut buf), text.as_bytes());
        }
        for text in [
            "",
            "-",
            "1",
            "01-1",
            "1-01",
            "a-1",
            "1-1-1",
            "18446744073709551616-0",
            " 1-1",
            "1-+1",
        ] {
            assert_eq!(StreamId::parse(text.as_bytes()), None, "{text:?}");
        }
        assert!(StreamId { ms: 1, seq: 9 } < StreamId { ms: 2, seq: 0 });
    }

    #[test]
    fn text_len_is_the_length_write_writes() {
        let numbers = [0, 1, 9, 10, 15, 16, 99, 100, 0xfff_ffff_ffff, u64::MAX];
        for epoch in numbers {
            for seq in numbers {
                for stream in [false, true] {
                    let id = EventId { epoch, seq, stream };
                    let mut buf = [0; 48];
                    assert_eq!(
                        id.text_len(),
                        id.write(&mut buf).len(),
                        "{epoch} {seq} {stream}"
                    );
                }
            }
        }
    }
}
