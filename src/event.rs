//! The event-stream wire format: [`Event`], its encoding, and [`EventError`].
//!
//! Every byte tower-sse writes to an event stream is produced here, following
//! the WHATWG HTML standard, section 9.2 ("Server-sent events"):
//!
//! - `data` text is split into lines at CR, LF and CRLF (CRLF is one line
//!   end, never two); each line is written as its own `data:` field, so the
//!   browser joins them back with LF. Text ending in a line break ends with an
//!   empty `data:` line, so the trailing line break survives. Other Unicode
//!   line separators (U+2028, U+0085, ...) are ordinary characters.
//! - A value is written after `: ` (colon, one space), so a value that starts
//!   with a space keeps it. An empty value is written as the bare field name
//!   and colon (`data:`).
//! - `id` values containing CR, LF or NUL and `event` values containing CR or
//!   LF are refused with an [`EventError`]: written as they are, they would
//!   end the field early and let the rest be read as new fields (an injected
//!   event), or make the browser ignore the id.
//! - `retry` is written in whole milliseconds.
//! - A comment with line breaks becomes one comment line per line; it can
//!   never produce a field.
//! - Every event ends with a blank line. Field names are lowercase, line ends
//!   are LF, and no byte-order mark is ever written.
//!
//! Fields are written in the order the setters are called. Calling
//! [`Event::data`] again adds more data lines (the browser receives the texts
//! joined by a line feed); calling [`Event::id`] or [`Event::event`] again
//! writes the field again, and the browser keeps the last one.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_sse::Event;
//!
//! # fn main() -> Result<(), tower_sse::EventError> {
//! let event = Event::new()
//!     .event("tick")?
//!     .id("42")?
//!     .retry(Duration::from_secs(3))
//!     .data("first line\nsecond line")
//!     .encode();
//!
//! assert_eq!(
//!     event.as_bytes(),
//!     &b"event: tick\nid: 42\nretry: 3000\ndata: first line\ndata: second line\n\n"[..]
//! );
//!
//! // A line break in an id would forge a new event: it is refused.
//! assert!(Event::new().id("1\ndata: forged").is_err());
//! # Ok(())
//! # }
//! ```

use std::{cell::Cell, error::Error as StdError, fmt, time::Duration};

use bytes::Bytes;

/// The type of the event the crate writes on its own to set the browser's
/// reconnection delay before a stream ends (shutdown, maximum lifetime, a
/// client that lagged, a full hub): `retry:`, this type and an empty
/// `data:` line, no id. A `retry:` alone is dropped by some non-browser
/// clients (eventsource-stream, sseclient-py) and dispatched as an empty
/// `message` by others (httpx-sse); as a typed event every client
/// honours it, and no `message` listener sees it.
pub const RETRY_EVENT: &str = "sse-retry";

/// The event [`RETRY_EVENT`] with a reconnection delay of `delay`.
#[cfg(any(feature = "layers", feature = "hub"))]
pub(crate) fn retry_event(delay: Duration) -> Event {
    Event::new()
        .retry(delay)
        .event_type(EventType::from_static(RETRY_EVENT))
        .data("")
}

/// The longest [`Event::retry`] written: 2^31 - 1 milliseconds (about 24.8
/// days), the longest delay a browser's timer holds.
pub const MAX_RETRY: Duration = Duration::from_millis(i32::MAX as u64);

/// One server-sent event, built with setters and encoded as it is built.
///
/// See the [module documentation](self) for the encoding rules. Turn it into
/// bytes with [`Event::encode`]; an [`EventStream`](crate::EventStream)
/// accepts `Event`s directly.
#[must_use]
#[derive(Clone, Default)]
pub struct Event {
    /// The encoding so far; `None` until the first field. Boxed so that an
    /// event is one word: events are moved by value through the user's
    /// closure, stream combinators and the body, and moving a 32-byte event
    /// through memory stalled on the stores just before each move (measured
    /// in the load test). The box comes from, and goes back to, the
    /// thread's spare, so building an event in a burst allocates nothing.
    inner: Option<Box<Encoding>>,
}

/// An event's bytes so far, and what it has.
#[derive(Clone, Default)]
pub(crate) struct Encoding {
    pub(crate) buf: Vec<u8>,
    has_data: bool,
    has_type: bool,
    has_id: bool,
}

impl Encoding {
    /// The event has a type line (`event:`).
    pub(crate) fn has_type(&self) -> bool {
        self.has_type
    }
}

impl Event {
    /// An empty event. Encoded as it is, it is a lone blank line, which the
    /// browser ignores.
    #[inline]
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoding, taken from the thread's spare (or allocated) on the
    /// first field.
    #[inline]
    fn encoding(&mut self) -> &mut Encoding {
        self.inner.get_or_insert_with(spare_encoding)
    }

    /// Adds `data` to the event, one `data:` line per line of text.
    ///
    /// Lines end at CR, LF or CRLF. Empty text still writes a `data:` line,
    /// so the browser dispatches the event with empty data.
    #[inline(always)]
    pub fn data(mut self, data: impl AsRef<str>) -> Self {
        let data = data.as_ref().as_bytes();
        let encoding = self.encoding();
        write_lines(&mut encoding.buf, b"data: ", data);
        encoding.has_data = true;
        self
    }

    /// Adds `value` serialized as JSON as the event's data.
    ///
    /// Compact JSON never holds a raw line break (strings escape them), so
    /// this writes a single `data:` line.
    ///
    /// # Errors
    ///
    /// [`JsonDataError`] when `value` cannot be serialized as JSON (for
    /// example a map with non-string keys); it holds the serializer's error
    /// and gives the event back as it was ([`JsonDataError::into_event`]).
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json_data<T>(mut self, value: &T) -> Result<Self, JsonDataError>
    where
        T: serde::Serialize + ?Sized,
    {
        let encoding = self.encoding();
        let start = encoding.buf.len();
        encoding.buf.extend_from_slice(b"data: ");
        if let Err(source) = serde_json::to_writer(&mut encoding.buf, value) {
            // Nothing of the refused value stays in the event.
            encoding.buf.truncate(start);
            return Err(JsonDataError {
                source,
                event: self,
            });
        }
        encoding.buf.push(b'\n');
        encoding.has_data = true;
        Ok(self)
    }

    /// Sets the event type (`event:`), which selects the listener that
    /// receives it in the browser (`addEventListener(type, ..)`).
    ///
    /// An event that has a type but no data is written with an empty `data:`
    /// line, because the browser silently drops an event without data.
    ///
    /// # Errors
    ///
    /// [`EventError`] ([`EventErrorKind::TypeLineBreak`]) when `event`
    /// contains CR or LF; it gives the event back
    /// ([`EventError::into_event`]). A type the program writes itself
    /// needs no check at run time: [`event_type`](Event::event_type).
    #[inline(always)]
    pub fn event(mut self, event: impl AsRef<str>) -> Result<Self, EventError> {
        let event = event.as_ref().as_bytes();
        if has_line_break(event) {
            return Err(EventError::new(EventErrorKind::TypeLineBreak, self));
        }
        let encoding = self.encoding();
        write_field(&mut encoding.buf, b"event: ", event);
        encoding.has_type = true;
        Ok(self)
    }

    /// Sets the event id (`id:`), which the browser sends back in the
    /// `Last-Event-ID` header when it reconnects.
    ///
    /// An empty id is written (`id:`) and resets the browser's last event id;
    /// an event without a call to `id` leaves it as it was.
    ///
    /// # Errors
    ///
    /// [`EventError`] ([`EventErrorKind::IdLineBreak`] or
    /// [`EventErrorKind::IdNul`]) when `id` contains CR, LF or NUL; it gives
    /// the event back ([`EventError::into_event`]). A number needs no
    /// check: [`id_number`](Event::id_number).
    #[inline(always)]
    pub fn id(mut self, id: impl AsRef<str>) -> Result<Self, EventError> {
        let id = id.as_ref().as_bytes();
        // One scan for all three; a line break wins over a NUL.
        if has_forbidden_id_byte(id) {
            return Err(refused_id(id, self));
        }
        let encoding = self.encoding();
        write_field(&mut encoding.buf, b"id: ", id);
        encoding.has_id = true;
        Ok(self)
    }

    /// Sets the event id (`id:`) to a number, written in decimal. Nothing
    /// to refuse, so nothing to check: the common path for ids a program
    /// counts itself.
    #[inline]
    pub fn id_number(mut self, id: u64) -> Self {
        // Written as `retry` writes its number: digits only, never empty.
        use std::io::Write as _;
        let encoding = self.encoding();
        // Writing to a Vec cannot fail.
        let _ = writeln!(encoding.buf, "id: {id}");
        encoding.has_id = true;
        self
    }

    /// Sets the event type (`event:`) to one the program wrote itself and
    /// checked once, when the [`EventType`] was made.
    ///
    /// ```
    /// use tower_sse::{event::EventType, Event};
    ///
    /// const TICK: EventType = EventType::from_static("tick");
    /// let event = Event::new().event_type(TICK).id_number(7).data("1");
    /// assert_eq!(event.encode().as_bytes(), b"event: tick\nid: 7\ndata: 1\n\n");
    /// ```
    #[inline]
    pub fn event_type(mut self, event_type: EventType) -> Self {
        let encoding = self.encoding();
        write_field(&mut encoding.buf, b"event: ", event_type.0.as_bytes());
        encoding.has_type = true;
        self
    }

    /// Sets the browser's reconnection delay (`retry:`), written in whole
    /// milliseconds (sub-millisecond parts are dropped), at most
    /// [`MAX_RETRY`] (about 24.8 days): a longer delay is written as that.
    ///
    /// Browsers wait with timers that hold a signed 32-bit count of
    /// milliseconds; a larger value can overflow them into no wait at all.
    pub fn retry(mut self, retry: Duration) -> Self {
        // u64 written with `Display` is ASCII digits only.
        use std::io::Write as _;
        let millis = retry.min(MAX_RETRY).as_millis() as u64;
        let buf = &mut self.encoding().buf;
        buf.reserve(20);
        // Writing to a Vec cannot fail.
        let _ = writeln!(buf, "retry: {millis}");
        self
    }

    /// Adds a comment (`: text`), which the browser ignores. Text with line
    /// breaks becomes one comment line per line.
    pub fn comment(mut self, comment: impl AsRef<str>) -> Self {
        write_lines(&mut self.encoding().buf, b": ", comment.as_ref().as_bytes());
        self
    }

    /// Ends the event with its blank line and returns its bytes.
    ///
    /// The result is cheap to clone: send one encoded event to many streams
    /// without encoding it again.
    pub fn encode(self) -> EncodedEvent {
        EncodedEvent(into_bytes(self.finish()))
    }

    /// Whether [`Event::id`] was called.
    #[cfg(feature = "hub")]
    pub(crate) fn has_id(&self) -> bool {
        self.inner.as_ref().is_some_and(|encoding| encoding.has_id)
    }

    /// The fields encoded so far, as they are stored for the Redis backend
    /// (without the blank line, to which the reader adds the `id:` line):
    /// an event with a type and no data gets its empty `data:` line here,
    /// in a copy, so that the event stays as it was.
    #[cfg(hub_log)]
    pub(crate) fn stored_fields(&self) -> std::borrow::Cow<'_, [u8]> {
        let Some(encoding) = &self.inner else {
            return std::borrow::Cow::Borrowed(&[]);
        };
        if encoding.has_type && !encoding.has_data {
            let mut fields = encoding.buf.clone();
            fields.extend_from_slice(b"data:\n");
            return std::borrow::Cow::Owned(fields);
        }
        std::borrow::Cow::Borrowed(&encoding.buf)
    }

    /// Writes an `id:` field the caller knows to be safe (no CR, LF or NUL).
    #[cfg(feature = "hub")]
    pub(crate) fn trusted_id(mut self, id: &[u8]) -> Self {
        debug_assert!(!has_forbidden_id_byte(id));
        let encoding = self.encoding();
        write_field(&mut encoding.buf, b"id: ", id);
        encoding.has_id = true;
        self
    }

    /// The finished encoding (ending with the blank line), which the body
    /// appends to a frame and hands back with [`recycle`], or turns into
    /// bytes of their own with [`into_bytes`].
    #[inline]
    pub(crate) fn finish(mut self) -> Box<Encoding> {
        let encoding = self.encoding();
        if encoding.has_type && !encoding.has_data {
            encoding.buf.extend_from_slice(b"data:\n");
        }
        encoding.buf.push(b'\n');
        self.inner.take().unwrap_or_default()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field(
                "fields",
                &String::from_utf8_lossy(self.inner.as_ref().map_or(&[][..], |e| &e.buf)),
            )
            .finish()
    }
}

/// An event already encoded, ready to be written to any number of streams.
///
/// Cloning it clones a reference-counted pointer, not the bytes. An
/// [`EventStream`](crate::EventStream) writes it as it is.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedEvent(Bytes);

impl EncodedEvent {
    /// Bytes known to hold whole encoded events.
    #[cfg(feature = "hub")]
    pub(crate) fn from_encoded(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The encoded bytes, ending with the event's blank line.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded bytes as shared [`Bytes`].
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl From<Event> for EncodedEvent {
    fn from(event: Event) -> Self {
        event.encode()
    }
}

impl From<EncodedEvent> for Bytes {
    fn from(event: EncodedEvent) -> Self {
        event.0
    }
}

impl fmt::Debug for EncodedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EncodedEvent")
            .field(&String::from_utf8_lossy(&self.0))
            .finish()
    }
}

/// The error for an id holding CR, LF or NUL (out of the hot path); a line
/// break wins over a NUL.
#[cold]
#[inline(never)]
fn refused_id(id: &[u8], event: Event) -> EventError {
    let kind = if find_line_break(id).is_some() {
        EventErrorKind::IdLineBreak
    } else {
        EventErrorKind::IdNul
    };
    EventError::new(kind, event)
}

/// An event type written by the program itself, checked once: made with
/// [`EventType::from_static`] (in a `const`, the check runs when the
/// program is compiled), and set with [`Event::event_type`] without a
/// `Result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventType(&'static str);

impl EventType {
    /// The event type `name`.
    ///
    /// # Panics
    ///
    /// When `name` contains CR or LF, like `http::HeaderName::from_static`:
    /// in a `const` that is a compile error, so write
    /// `const TICK: EventType = EventType::from_static("tick");`. A type
    /// from outside the program goes through [`Event::event`], which
    /// returns an error instead.
    pub const fn from_static(name: &'static str) -> Self {
        let bytes = name.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\n' || bytes[i] == b'\r' {
                panic!("an event type must not contain CR or LF");
            }
            i += 1;
        }
        Self(name)
    }

    /// The type's name.
    pub const fn as_str(&self) -> &'static str {
        self.0
    }
}

/// An event field value that cannot be written safely.
///
/// It gives back the event as it was before the refused value
/// ([`into_event`](EventError::into_event)): nothing already set is lost.
#[derive(Debug, Clone)]
pub struct EventError {
    kind: EventErrorKind,
    event: Event,
}

/// What an [`EventError`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventErrorKind {
    /// The `id` contains CR or LF, which would end the field and let the
    /// rest be read as new fields.
    IdLineBreak,
    /// The `id` contains NUL (U+0000), which makes browsers ignore it.
    IdNul,
    /// The `event` type contains CR or LF.
    TypeLineBreak,
}

impl EventError {
    fn new(kind: EventErrorKind, event: Event) -> Self {
        Self { kind, event }
    }

    /// What was refused.
    pub fn kind(&self) -> EventErrorKind {
        self.kind
    }

    /// The event as it was before the refused value, with everything
    /// already set.
    pub fn into_event(self) -> Event {
        self.event
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            EventErrorKind::IdLineBreak => {
                "the `id` value contains a line break (CR or LF), which would end the field \
                 and let the rest be read as new fields"
            }
            EventErrorKind::IdNul => {
                "the `id` value contains a NUL character, which makes browsers ignore the field"
            }
            EventErrorKind::TypeLineBreak => {
                "the `event` value contains a line break (CR or LF), which would end the field \
                 and let the rest be read as new fields"
            }
        })
    }
}

impl StdError for EventError {}

/// A value [`Event::json_data`] could not serialize, with the event as it
/// was before.
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
#[derive(Debug)]
pub struct JsonDataError {
    source: serde_json::Error,
    event: Event,
}

#[cfg(feature = "json")]
impl JsonDataError {
    /// The event as it was before the refused value, with everything
    /// already set.
    pub fn into_event(self) -> Event {
        self.event
    }
}

#[cfg(feature = "json")]
impl fmt::Display for JsonDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the event data cannot be serialized as JSON: {}",
            self.source
        )
    }
}

#[cfg(feature = "json")]
impl StdError for JsonDataError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}

/// Writes `prefix` (a field name, colon and space: `b"id: "`; `b": "` for
/// a comment), `value` and a line end; for an empty value the name and
/// colon alone (`id:`). One piece for name, colon and space saves a copy
/// per field.
#[inline(always)]
fn write_field(buf: &mut Vec<u8>, prefix: &[u8], value: &[u8]) {
    debug_assert!(prefix.ends_with(b": "));
    // No `reserve` first: each `extend_from_slice` checks for room anyway,
    // and the extra check cost 7 instructions per burst event (callgrind),
    // while an encoding taken from the thread's spare rarely has to grow.
    if value.is_empty() {
        buf.extend_from_slice(&prefix[..prefix.len() - 1]);
    } else {
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(value);
    }
    buf.push(b'\n');
}

/// The room a new encoding starts with: a small event's fields.
const FIRST_CAPACITY: usize = 128;

thread_local! {
    /// One empty event encoding per thread. An [`EventStream`] that has
    /// copied an event into a joined frame, or written it as a frame of its
    /// own, and [`Event::encode`] hand the event's encoding back here, and
    /// the next event built on this thread takes it: a burst of events then
    /// costs no allocation per event.
    ///
    /// [`EventStream`]: crate::EventStream
    static SPARE: Cell<Option<Box<Encoding>>> = const { Cell::new(None) };
}

/// Buffers larger than this are freed, not kept in the thread's spare.
const SPARE_MAX: usize = 4 * 1024;

/// This thread's spare encoding, or a new one.
fn spare_encoding() -> Box<Encoding> {
    SPARE
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(new_encoding)
}

/// A buffer too large to keep, or too small to start an event in (moved
/// out, or cloned to its length), swapped for one of [`FIRST_CAPACITY`]
/// (out of the hot path).
#[cold]
#[inline(never)]
fn refit(buf: &mut Vec<u8>) {
    *buf = Vec::with_capacity(FIRST_CAPACITY);
}

/// A new encoding, when the thread has no spare (out of the hot path).
#[cold]
#[inline(never)]
fn new_encoding() -> Box<Encoding> {
    Box::new(Encoding {
        buf: Vec::with_capacity(FIRST_CAPACITY),
        has_data: false,
        has_type: false,
        has_id: false,
    })
}

/// Hands a finished event's encoding back for the next event on this
/// thread.
#[inline(always)]
pub(crate) fn recycle(mut encoding: Box<Encoding>) {
    if !(FIRST_CAPACITY..=SPARE_MAX).contains(&encoding.buf.capacity()) {
        refit(&mut encoding.buf);
    }
    encoding.buf.clear();
    encoding.has_data = false;
    encoding.has_type = false;
    encoding.has_id = false;
    // During thread teardown the slot is gone; the encoding is freed.
    let _ = SPARE.try_with(|spare| spare.set(Some(encoding)));
}

/// A finished encoding's bytes, and the encoding handed back to the
/// thread's spare with room for the next event.
///
/// The bytes of an encoding small enough to keep are copied out: handing
/// its buffer to `Bytes` costs more, as `Bytes` allocates a header for a
/// buffer with room to spare, and the next event on this thread would grow
/// a new buffer from nothing, several times over for a 64-byte event. A
/// larger buffer, which the spare would not keep, becomes the bytes as it
/// is (and [`recycle`] gives the spare a new one).
#[inline]
pub(crate) fn into_bytes(mut encoding: Box<Encoding>) -> Bytes {
    let bytes = if encoding.buf.capacity() > SPARE_MAX {
        Bytes::from(std::mem::take(&mut encoding.buf))
    } else {
        Bytes::copy_from_slice(&encoding.buf)
    };
    recycle(encoding);
    bytes
}

/// Writes one field per line of `text` (see [`write_field`] for `prefix`),
/// lines ending at CR, LF or CRLF.
///
/// Always inlined, as are [`Event::data`], [`Event::event`], [`Event::id`]
/// and [`recycle`]: the user's closure and these setters then compile to
/// one function, and a burst event counts 293 instructions instead of 360
/// (callgrind, the load harness's `ours` server). Text that needs a search
/// goes to [`write_split_lines`], which is not inlined.
#[inline(always)]
fn write_lines(buf: &mut Vec<u8>, prefix: &[u8], text: &[u8]) {
    // Short text without a line break (most events) is written at once,
    // checked without setting up a search.
    if text.len() <= SHORT && !may_hold_line_break(text) {
        write_field(buf, prefix, text);
    } else {
        write_split_lines(buf, prefix, text);
    }
}

/// [`write_lines`] for text that is long or may hold a line break.
#[inline(never)]
fn write_split_lines(buf: &mut Vec<u8>, prefix: &[u8], mut text: &[u8]) {
    // Reserve once for the text, its first line's field name and the
    // event's blank line, plus an eighth for more lines (lines of 56 bytes
    // or more fit), without scanning the text twice.
    buf.reserve(text.len() + text.len() / 8 + 8);
    while let Some(end) = find_line_break(text) {
        write_field(buf, prefix, &text[..end]);
        let skip = if text[end] == b'\r' && text.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        text = &text[end + skip..];
    }
    write_field(buf, prefix, text);
}

/// Text up to this long is checked for line breaks by [`may_hold_line_break`]
/// before any search.
const SHORT: usize = 128;

/// `false` when `bytes` certainly holds no CR, LF or NUL: every byte above
/// CR (13) is none of them, so one comparison per byte decides. Up to 16
/// bytes (ids, event types) are read a byte at a time: such values were
/// often just written (a number formatted into a buffer), and a wider load
/// over bytes still on their way to memory stalls until they get there
/// (measured with `perf`: half of `Event::id`'s time, when it read two
/// overlapping words). Longer text is checked as a minimum over all bytes,
/// which the compiler turns into vector instructions without a branch per
/// byte. `true` also for tabs and other control bytes, where the caller
/// then searches.
#[inline]
fn may_hold_line_break(bytes: &[u8]) -> bool {
    if bytes.len() <= 16 {
        for &b in bytes {
            if b <= b'\r' {
                return true;
            }
        }
        return false;
    }
    bytes.iter().fold(u8::MAX, |min, &b| min.min(b)) <= b'\r'
}

/// Whether `bytes` contains CR or LF; short values are checked without
/// setting up a search.
#[inline]
fn has_line_break(bytes: &[u8]) -> bool {
    (bytes.len() > SHORT || may_hold_line_break(bytes)) && find_line_break(bytes).is_some()
}

/// Whether `id` contains CR, LF or NUL; short ids are checked without
/// setting up a search.
#[inline]
fn has_forbidden_id_byte(id: &[u8]) -> bool {
    (id.len() > SHORT || may_hold_line_break(id)) && memchr::memchr3(b'\n', b'\r', 0, id).is_some()
}

/// The index of the first CR or LF in `bytes`.
#[inline]
pub(crate) fn find_line_break(bytes: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\n', b'\r', bytes)
}

/// Where a stream of event-stream bytes stands, read from the bytes written
/// so far: between events (where a new event or a comment frame may be
/// written), or inside one.
///
/// Line ends are CR, LF and CRLF; an event ends at an empty line. A CRLF may
/// be split across two frames.
#[cfg(feature = "layers")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boundary {
    /// Between events: at the start, or just after an empty line.
    Between,
    /// At the start of a line inside an event.
    LineStart,
    /// Inside a line.
    MidLine,
    /// Just after a CR; an LF next belongs to it. `between` tells whether the
    /// CR ended an empty line.
    AfterCr { between: bool },
}

#[cfg(feature = "layers")]
impl Boundary {
    /// Whether a new event or comment frame may be written now.
    pub(crate) fn is_between(self) -> bool {
        matches!(
            self,
            Boundary::Between | Boundary::AfterCr { between: true }
        )
    }

    /// The state after `bytes` are written.
    ///
    /// Only the line ends after the last other byte matter, so this looks
    /// at the tail of `bytes` alone.
    pub(crate) fn after(self, bytes: &[u8]) -> Self {
        // Frames of whole events end with an empty line; whatever came
        // before, two LFs end between events.
        if bytes.ends_with(b"\n\n") {
            return Boundary::Between;
        }
        let is_break = |b: &u8| *b == b'\n' || *b == b'\r';
        let (mut state, tail) = match bytes.iter().rposition(|b| !is_break(b)) {
            Some(last) => (Boundary::MidLine, &bytes[last + 1..]),
            None => (self, bytes),
        };
        for &b in tail {
            state = state.step(b);
        }
        state
    }

    fn step(self, b: u8) -> Self {
        use Boundary::*;
        match (self, b) {
            // The LF of a CRLF: the CR already ended the line.
            (AfterCr { between: true }, b'\n') => Between,
            (AfterCr { between: false }, b'\n') => LineStart,
            // A line end on an empty line: the event (if any) ends here.
            (Between | LineStart, b'\n') => Between,
            (Between | LineStart | AfterCr { .. }, b'\r') => AfterCr { between: true },
            (MidLine, b'\n') => LineStart,
            (MidLine, b'\r') => AfterCr { between: false },
            _ => MidLine,
        }
    }
}

#[cfg(test)]
mod tests;
