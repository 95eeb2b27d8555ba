//! The ids the hub gives events: `<epoch>-<sequence>`, the epoch in
//! lowercase hexadecimal and the sequence in decimal, both without leading
//! zeros (`3fa9c0d2e1b7-42`).

use std::{fmt, io::Write as _};

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
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId {
    pub(super) epoch: u64,
    pub(super) seq: u64,
}

impl EventId {
    /// The event's place in its topic: 1 for the first event published to
    /// the topic since it was made, then 2, 3, ...
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// Writes the text form into `buf` and returns it.
    pub(super) fn write<'a>(&self, buf: &'a mut [u8; 40]) -> &'a [u8] {
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        // 12 hex digits, a dash and 20 decimal digits fit in 40 bytes.
        let _ = write!(cursor, "{:x}-{}", self.epoch, self.seq);
        let len = cursor.position() as usize;
        &buf[..len]
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
        Some(Self {
            epoch: u64::from_str_radix(epoch, 16).ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{}", self.epoch, self.seq)
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
            let id = EventId { epoch, seq };
            let mut buf = [0; 40];
            let text = std::str::from_utf8(id.write(&mut buf)).unwrap().to_owned();
            assert_eq!(text, id.to_string());
            assert_eq!(EventId::parse(&text), Some(id), "{text}");
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
}
