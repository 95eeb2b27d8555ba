//! Many topics over one stream: the set a request asks for ([`TopicSet`]),
//! the id that holds the position of every topic of the set, and the
//! subscription that merges the topics' histories.
//!
//! Each topic of the set is subscribed as on its own (the same positions,
//! gaps and lag), and the subscription writes the next event of whichever
//! topic published first (each entry carries a hub-wide order stamp taken
//! when it was appended). Every event is written anew for the set: its type
//! names its topic, and its id is the position of every topic of the set,
//! so that one `Last-Event-ID` resumes all of them.
//!
//! The id: `t` then, in base64url without padding, a varint `base` (the
//! largest first number of the positions), then per topic a 16-bit hash of
//! its name, `base - first` and `second` as varints. For the memory hub a
//! position is the topic's epoch and sequence number; for a backend, the
//! log's id (milliseconds and sequence). A topic of the set that is not in
//! the id starts fresh; one whose hash two topics share, or that the id
//! holds twice, starts with a gap (`unknown-id`). Positions name no topic
//! outside the set the app allowed, so an edited id can move where a topic
//! of the set resumes, never add one.
//!
//! Subscriptions to the same set (the same names in the same order) share
//! the last live event one of them wrote: one at the same positions writes
//! the same bytes, so it takes that copy instead of writing its own. A live
//! fan-out to many pages of one set then writes each event once, as a
//! topic's subscribers do; a subscription replaying its history writes its
//! own and leaves the share alone.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError, Weak,
    },
    task::{Context, Poll, Wake, Waker},
    time::Instant,
};

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    id::EventId,
    topic::{Asked, Read, Stored, Topic},
    GapReason, HubError, HubErrorKind, Shared, Start, MAX_TOPIC_LEN,
};
use crate::event::{EncodedEvent, Event, EventType};

/// The most topics one subscription may have, whatever
/// [`max_topics_per_subscription`](super::HubBuilder::max_topics_per_subscription)
/// says.
pub const MAX_TOPICS_PER_SUBSCRIPTION: usize = 256;

/// The longest `Last-Event-ID` a set's gap events repeat in their data
/// (longer: `null`): room for the id of a set of 64 topics.
const MAX_ECHOED_ID_LEN: usize = 1024;

/// The longest `Last-Event-ID` a set's subscription reads: room for every
/// topic's position at its largest (22 bytes each), in base64.
const MAX_SET_ID_LEN: usize = 1 + (10 + MAX_TOPICS_PER_SUBSCRIPTION * 22) * 4 / 3 + 4;

/// The topics one stream asks for: names checked and without repeats,
/// before the app checks which of them the user may read
/// ([`check`](TopicSet::check)) and subscribes with
/// [`Hub::subscribe_set`](super::Hub::subscribe_set).
///
/// A name must be usable as an event type (the set's events are typed by
/// their topic): not empty, no CR, LF or NUL, at most
/// [`MAX_TOPIC_LEN`] bytes. Order and repeats do not matter.
#[derive(Clone, PartialEq, Eq)]
pub struct TopicSet {
    /// Sorted, without repeats.
    names: Vec<Box<str>>,
}

impl TopicSet {
    /// The set of `topics`.
    ///
    /// # Errors
    ///
    /// [`HubErrorKind::BadTopic`] (answered `400`) when there is no
    /// topic, a name is empty or has a CR, LF or NUL, or there are more
    /// than [`MAX_TOPICS_PER_SUBSCRIPTION`]; [`HubErrorKind::TopicTooLong`]
    /// when a name is longer than [`MAX_TOPIC_LEN`].
    pub fn new<I, T>(topics: I) -> Result<Self, HubError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let mut names = Vec::new();
        for topic in topics {
            if names.len() == MAX_TOPICS_PER_SUBSCRIPTION {
                return Err(bad_set("more topics than MAX_TOPICS_PER_SUBSCRIPTION"));
            }
            names.push(checked(topic.as_ref())?);
        }
        Self::from_names(names)
    }

    /// The set named by the query string's `param` parameters
    /// (`?topic=ticks&topic=notes`, percent-decoded, `+` a space): what an
    /// `EventSource` URL usually carries.
    ///
    /// # Errors
    ///
    /// As [`new`](TopicSet::new); also [`HubErrorKind::BadTopic`] for a
    /// value that is not valid percent-encoded UTF-8.
    pub fn from_query(query: Option<&str>, param: &str) -> Result<Self, HubError> {
        let mut names = Vec::new();
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if decode(key).as_deref() != Some(param) {
                continue;
            }
            if names.len() == MAX_TOPICS_PER_SUBSCRIPTION {
                return Err(bad_set("more topics than MAX_TOPICS_PER_SUBSCRIPTION"));
            }
            let value =
                decode(value).ok_or_else(|| bad_set("a topic is not percent-encoded UTF-8"))?;
            names.push(checked(&value)?);
        }
        Self::from_names(names)
    }

    fn from_names(mut names: Vec<Box<str>>) -> Result<Self, HubError> {
        if names.is_empty() {
            return Err(bad_set("no topic"));
        }
        names.sort_unstable();
        names.dedup();
        Ok(Self { names })
    }

    /// The set, if `may_read` allows each of its topics; otherwise
    /// [`HubErrorKind::NotAllowed`] naming the first topic it refused,
    /// answered `403 Forbidden` before any stream opens (so `EventSource`
    /// stops: asking again will not help). `may_read` is where the app
    /// maps its user (from the session cookie) to the topics they may have.
    ///
    /// # Errors
    ///
    /// [`HubErrorKind::NotAllowed`].
    pub fn check(self, mut may_read: impl FnMut(&str) -> bool) -> Result<Self, HubError> {
        match self.names.iter().find(|name| !may_read(name)) {
            Some(refused) => Err(HubError {
                kind: HubErrorKind::NotAllowed,
                detail: Some(format!("topic {refused:?}").into()),
            }),
            None => Ok(self),
        }
    }

    /// The topics, in byte order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> {
        self.names.iter().map(|name| &**name)
    }

    /// How many topics.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false: a set has at least one topic.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl fmt::Debug for TopicSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

fn bad_set(why: &'static str) -> HubError {
    HubError {
        kind: HubErrorKind::BadTopic,
        detail: Some(why.into()),
    }
}

/// Event types a topic of a set may not have, since its events are typed
/// by its name: the browser's own (`message` goes to `onmessage`, `open`
/// and `error` to the connection's handlers) and the crate's. The hub's gap
/// event type is refused too, when subscribing.
const RESERVED: [&str; 5] = ["message", "open", "error", "sse-position", "sse-retry"];

fn checked(name: &str) -> Result<Box<str>, HubError> {
    if name.len() > MAX_TOPIC_LEN {
        return Err(HubError::new(HubErrorKind::TopicTooLong));
    }
    if name.is_empty() || name.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(bad_set("a topic is empty or has a CR, LF or NUL"));
    }
    if RESERVED.contains(&name) {
        return Err(bad_set(
            "a topic is named as an event type that means something else \
             (message, open, error, sse-position, sse-retry)",
        ));
    }
    Ok(name.into())
}

/// Percent-decodes a query string's key or value (`+` is a space); `None`
/// for a bad escape or bytes that are not UTF-8.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                // Two hexadecimal digits, nothing else (`from_str_radix`
                // alone would take a sign: `%+9`).
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A topic's position in a set's id: the memory hub's epoch and sequence
/// number, or a log's milliseconds and sequence.
type Position = (u64, u64);

/// The 16-bit hash by which a set's id names a topic (FNV-1a, folded).
fn name_hash(name: &str) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash ^ (hash >> 16)) as u16
}

fn put_varint(out: &mut Vec<u8>, value: u64) {
    let mut buf = [0; PART];
    let len = varint(&mut buf, 0, value);
    out.extend_from_slice(&buf[..len]);
}

/// The longest part of one topic in a set's id: its hash and two varints
/// of at most 10 bytes each.
const PART: usize = 22;

/// Writes `value` as a varint into `out` at `at` (room for 10 bytes);
/// returns where it ends.
fn varint(out: &mut [u8; PART], mut at: usize, mut value: u64) -> usize {
    while value >= 0x80 {
        out[at] = value as u8 | 0x80;
        value >>= 7;
        at += 1;
    }
    out[at] = value as u8;
    at + 1
}

fn get_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The four characters of three bytes (`group`'s first three).
#[inline]
fn base64_group(group: &[u8]) -> [u8; 4] {
    let n = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
    [
        BASE64URL[(n >> 18) as usize],
        BASE64URL[(n >> 12 & 63) as usize],
        BASE64URL[(n >> 6 & 63) as usize],
        BASE64URL[(n & 63) as usize],
    ]
}

fn base64_encode(bytes: &[u8], out: &mut impl BufMut) {
    // In steps of 48 bytes (64 characters) on the stack: one copy into
    // `out` per step, not one per character.
    for part in bytes.chunks(48) {
        let mut text = [0u8; 64];
        let mut len = 0;
        let mut chunks = part.chunks_exact(3);
        for chunk in &mut chunks {
            text[len..len + 4].copy_from_slice(&base64_group(chunk));
            len += 4;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let n = rest
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..=rest.len() {
                text[len] = BASE64URL[(n >> (18 - 6 * i) & 63) as usize];
                len += 1;
            }
        }
        out.put_slice(&text[..len]);
    }
}

fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = BASE64URL.iter().position(|&a| a == c)? as u32;
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
        // Canonical: the unused low bits are zero.
        let used = 8 * (chunk.len() - 1);
        if n & ((1 << (24 - used)) - 1) != 0 {
            return None;
        }
    }
    Some(out)
}

/// The 32-bit hash of a whole set (FNV-1a over its names in order, each
/// ended by a line feed, which no name holds).
fn set_hash<'a>(names: impl Iterator<Item = &'a str>) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for name in names {
        for b in name.bytes().chain([b'\n']) {
            hash ^= u32::from(b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    hash
}

/// Writes the id of a set whose hash is `set` from `positions` (each with
/// its topic's hash, in the set's order).
fn write_id(
    set: u32,
    positions: impl Iterator<Item = (u16, Position)> + Clone,
    out: &mut impl BufMut,
) {
    let mut raw = Vec::with_capacity(64);
    raw_id(set, positions, &mut raw, &mut Vec::new());
    out.put_u8(b't');
    base64_encode(&raw, out);
}

/// The bytes of a set's id before their base64 (see the module
/// documentation), and where each topic's part starts in them.
fn raw_id(
    set: u32,
    positions: impl Iterator<Item = (u16, Position)> + Clone,
    raw: &mut Vec<u8>,
    starts: &mut Vec<usize>,
) {
    let base = positions.clone().map(|(_, (a, _))| a).max().unwrap_or(0);
    raw.clear();
    starts.clear();
    put_varint(raw, base);
    raw.extend_from_slice(&set.to_be_bytes());
    for (hash, (a, b)) in positions {
        starts.push(raw.len());
        put_topic(raw, hash, base - a, b);
    }
    starts.push(raw.len());
}

/// One topic's part of a set's id.
fn put_topic(raw: &mut Vec<u8>, hash: u16, from_base: u64, b: u64) {
    let (part, len) = topic_part(hash, from_base, b);
    raw.extend_from_slice(&part[..len]);
}

/// One topic's part of a set's id on the stack, and its length.
fn topic_part(hash: u16, from_base: u64, b: u64) -> ([u8; PART], usize) {
    let mut part = [0u8; PART];
    part[..2].copy_from_slice(&hash.to_be_bytes());
    let len = varint(&mut part, 2, from_base);
    let len = varint(&mut part, len, b);
    (part, len)
}

/// A set subscription's id, kept from one event to the next: an event
/// moves one topic's position, and usually only its sequence number (on
/// the memory hub always), so only that topic's bytes are written again,
/// and the base64 characters they fall in. Anything else (a first number
/// that moved: a memory topic's new epoch, a log's new time; a number that
/// takes another byte) writes it whole.
#[derive(Default)]
struct Id {
    /// The positions it holds; empty: none written yet.
    positions: Vec<Position>,
    /// The largest first number of `positions` (which a patch never
    /// changes).
    base: u64,
    raw: Vec<u8>,
    /// Where each topic's part starts in `raw`, and the end.
    starts: Vec<usize>,
    /// The id's line: `id: t`, the base64 of `raw`, and the blank line
    /// that ends the event.
    text: Vec<u8>,
}

/// Where the base64 of an id starts in its line (after `id: t`).
const ID_TEXT: usize = "id: t".len();

impl Id {
    /// The id line of these positions (each with its topic's hash, in the
    /// set's order): `id: `, the id, and the blank line after it.
    fn text<I>(&mut self, set: u32, positions: I) -> &[u8]
    where
        I: ExactSizeIterator<Item = (u16, Position)> + Clone,
    {
        let mut patched = self.positions.len() == positions.len();
        for (i, position) in positions.clone().enumerate() {
            patched = patched && self.patch(i, position);
        }
        if !patched {
            self.write(set, positions);
        }
        &self.text
    }

    /// The id line of the `len` positions `at` gives, of which only those
    /// whose bit is set in `moved` (the first 64) may have moved since the
    /// last id: a cost per topic moved, not per topic of the set.
    fn text_moved(
        &mut self,
        set: u32,
        len: usize,
        moved: u64,
        at: impl Fn(usize) -> (u16, Position),
    ) -> &[u8] {
        let mut patched = self.positions.len() == len && len <= 64;
        let mut bits = moved;
        while patched && bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            patched = i < len && self.patch(i, at(i));
        }
        if !patched {
            self.write(set, (0..len).map(&at));
        }
        &self.text
    }

    /// Writes the id whole.
    fn write(&mut self, set: u32, positions: impl Iterator<Item = (u16, Position)> + Clone) {
        raw_id(set, positions.clone(), &mut self.raw, &mut self.starts);
        self.positions.clear();
        self.positions
            .extend(positions.map(|(_, position)| position));
        self.base = self.positions.iter().map(|(a, _)| *a).max().unwrap_or(0);
        self.text.clear();
        self.text.extend_from_slice(b"id: t");
        base64_encode(&self.raw, &mut self.text);
        self.text.extend_from_slice(b"\n\n");
    }

    /// Writes topic `i`'s part in place if only its sequence number moved
    /// and it takes as many bytes; `false` when the id must be written
    /// whole.
    fn patch(&mut self, i: usize, (hash, (a, b)): (u16, Position)) -> bool {
        if self.positions[i] == (a, b) {
            return true;
        }
        if a != self.positions[i].0 {
            return false;
        }
        let (part, len) = topic_part(hash, self.base - a, b);
        let (start, end) = (self.starts[i], self.starts[i + 1]);
        if len != end - start {
            return false;
        }
        self.raw[start..end].copy_from_slice(&part[..len]);
        self.positions[i] = (a, b);
        // The base64 groups of 3 bytes that hold the part, written in
        // place; the last group of the id may be short.
        let (first, last) = (start / 3, end.div_ceil(3));
        let whole = last.min(self.raw.len() / 3);
        for group in first..whole {
            let chars = base64_group(&self.raw[3 * group..3 * group + 3]);
            let at = ID_TEXT + 4 * group;
            self.text[at..at + 4].copy_from_slice(&chars);
        }
        if last > whole {
            self.text.truncate(ID_TEXT + 4 * whole);
            base64_encode(&self.raw[3 * whole..], &mut self.text);
            self.text.extend_from_slice(b"\n\n");
        }
        true
    }
}

/// Reads a set's id: the set's hash, and each topic's hash and position;
/// `None` for anything that is not one.
fn read_id(text: &[u8]) -> Option<(u32, Vec<(u16, Position)>)> {
    let text = text.strip_prefix(b"t")?;
    if text.len() > MAX_SET_ID_LEN {
        return None;
    }
    let raw = base64_decode(text)?;
    let mut rest = &raw[..];
    let base = get_varint(&mut rest)?;
    let set = u32::from_be_bytes([*rest.first()?, *rest.get(1)?, *rest.get(2)?, *rest.get(3)?]);
    rest = &rest[4..];
    let mut positions = Vec::new();
    while !rest.is_empty() {
        if positions.len() == MAX_TOPICS_PER_SUBSCRIPTION {
            return None;
        }
        let hash = [*rest.first()?, *rest.get(1)?];
        rest = &rest[2..];
        let a = base.checked_sub(get_varint(&mut rest)?)?;
        let b = get_varint(&mut rest)?;
        positions.push((u16::from_be_bytes(hash), (a, b)));
    }
    Some((set, positions))
}

/// One topic of a set's subscription.
pub(super) struct Member {
    /// `event: <topic>` and a line end: the line that starts each of its
    /// events, written in one piece (see `name`).
    line: Box<str>,
    hash: u16,
    pub(super) topic: Arc<Topic>,
    /// The sequence number of its next event.
    next: u64,
    slot: usize,
    /// Where the stream is in this topic: the id of the last event it
    /// wrote of it (or of the position it started at).
    position: Position,
    pub(super) start: Start,
    /// Its next event, read but not written yet (another topic's came
    /// first).
    peeked: Option<Stored>,
    /// What its topic wakes: marks the member to be read, then wakes the
    /// task. The same waker every time, so a topic keeps it in place.
    waker: Waker,
}

impl Member {
    /// The topic's name.
    pub(super) fn name(&self) -> &str {
        &self.line["event: ".len()..self.line.len() - 1]
    }
}

/// Which members of a set may have an event: a wake-up marks the member
/// whose topic published, so that a poll reads only those, not every
/// topic of the set (a member not marked still has its waker in its
/// topic, which takes it out only to wake it).
struct Wakes {
    /// One bit per member.
    marked: Box<[AtomicU64]>,
    /// The task reading the set.
    task: Mutex<Option<Waker>>,
}

impl Wakes {
    fn task(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        self.task.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One member's waker.
struct MemberWake {
    wakes: Arc<Wakes>,
    index: usize,
}

impl Wake for MemberWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.marked[self.index / 64].fetch_or(1 << (self.index % 64), Ordering::AcqRel);
        // Woken under the lock (no clone): waking schedules the task, and
        // takes no lock of this set.
        if let Some(task) = self.wakes.task().as_ref() {
            task.wake_by_ref();
        }
    }
}

/// The sets that subscriptions read now, each with what its subscriptions
/// share (see the module documentation), by the set's hash.
#[derive(Default)]
pub(super) struct Shares {
    map: Mutex<HashMap<u32, Weak<Share>>>,
}

impl Shares {
    fn map(&self) -> MutexGuard<'_, HashMap<u32, Weak<Share>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the subscriptions to `members` (whose hash is `set`) share: the
    /// set's entry, or a new one. A set whose hash another set has taken
    /// gets one of its own, shared with nobody.
    fn join(&self, set: u32, members: &[Member]) -> Arc<Share> {
        let same = |share: &Share| {
            share.names.len() == members.len()
                && share
                    .names
                    .iter()
                    .zip(members)
                    .all(|(a, m)| **a == *m.name())
        };
        let mut map = self.map();
        let found = map.get(&set).and_then(Weak::upgrade);
        match found {
            Some(share) if same(&share) => share,
            Some(_) => Share::new(set, members),
            None => {
                let share = Share::new(set, members);
                map.insert(set, Arc::downgrade(&share));
                share
            }
        }
    }

    /// A subscription leaves: the last of its set removes the set's entry.
    fn leave(&self, share: Arc<Share>) {
        let set = share.set;
        let weak = Arc::downgrade(&share);
        let mut map = self.map();
        // Dropped under the lock, where references are also added
        // (`join`): of two subscriptions leaving at once, the second sees
        // none left. (Checking for the last reference before dropping it
        // let both see two, and the entry stayed.)
        drop(share);
        if weak.strong_count() == 0 && map.get(&set).is_some_and(|entry| entry.ptr_eq(&weak)) {
            map.remove(&set);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map().len()
    }
}

/// The last event written by a subscription to one set.
struct Share {
    set: u32,
    names: Box<[Box<str>]>,
    last: Mutex<Last>,
}

struct Last {
    /// Which member's event it is (`usize::MAX`: none yet).
    member: usize,
    /// Every member's position after it.
    positions: Vec<Position>,
    event: Bytes,
}

impl Share {
    fn new(set: u32, members: &[Member]) -> Arc<Self> {
        Arc::new(Self {
            set,
            names: members.iter().map(|m| m.name().into()).collect(),
            last: Mutex::new(Last {
                member: usize::MAX,
                positions: Vec::with_capacity(members.len()),
                event: Bytes::new(),
            }),
        })
    }

    fn last(&self) -> MutexGuard<'_, Last> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The event of member `index` written at these positions, if it was
    /// the last one written.
    fn get(&self, index: usize, members: &[Member]) -> Option<Bytes> {
        let last = self.last();
        let same = last.member == index
            && last
                .positions
                .iter()
                .zip(members)
                .all(|(position, m)| *position == m.position);
        same.then(|| last.event.clone())
    }

    fn put(&self, index: usize, members: &[Member], event: &Bytes) {
        let mut last = self.last();
        last.member = index;
        last.positions.clear();
        last.positions.extend(members.iter().map(|m| m.position));
        last.event = event.clone();
    }
}

/// What a member starts with, for `SetStream::new`.
pub(super) struct Opened {
    pub(super) name: Box<str>,
    pub(super) topic: Arc<Topic>,
    pub(super) next: u64,
    pub(super) slot: usize,
    pub(super) start: Start,
    /// The position the stream starts at in this topic.
    pub(super) position: EventId,
    /// A gap's reason and, for a truncated history, how many were missed.
    pub(super) gap: Option<(GapReason, Option<u64>)>,
}

/// The asked positions of a set, read from a `Last-Event-ID`.
pub(super) enum AskedSet {
    Nothing,
    Unreadable,
    /// The hash of the set that wrote the id, and its positions.
    Positions(u32, Vec<(u16, Position)>),
}

impl AskedSet {
    pub(super) fn from_bytes(bytes: Option<&[u8]>) -> Self {
        match bytes {
            None | Some(b"") => AskedSet::Nothing,
            Some(bytes) => read_id(bytes).map_or(AskedSet::Unreadable, |(set, positions)| {
                AskedSet::Positions(set, positions)
            }),
        }
    }

    /// What `name` asks for, written as the topic's own id into `buf`
    /// (`log`: the topic's ids are a log's); `names` is the whole set. An
    /// id the same set wrote (the usual case) gives each topic its place by
    /// order; an id of another set, by the topics' hashes, and a hash that
    /// two topics share is unreadable for both.
    pub(super) fn asked<'a>(
        &self,
        name: &str,
        names: &TopicSet,
        log: bool,
        buf: &'a mut [u8; 48],
    ) -> Asked<'a> {
        let (set, positions) = match self {
            AskedSet::Nothing => return Asked::Nothing,
            AskedSet::Unreadable => return Asked::Unreadable,
            AskedSet::Positions(set, positions) => (*set, positions),
        };
        let hash = name_hash(name);
        let same_set = set == set_hash(names.iter()) && positions.len() == names.len();
        let place = names.iter().position(|other| other == name);
        if let (true, Some(place)) = (same_set, place) {
            return match positions[place] {
                (h, (a, b)) if h == hash => position_text(a, b, log, buf),
                // Not what that set writes: edited.
                _ => Asked::Unreadable,
            };
        }
        if names
            .iter()
            .filter(|other| name_hash(other) == hash)
            .count()
            > 1
        {
            return Asked::Unreadable;
        }
        let mut found = positions.iter().filter(|(h, _)| *h == hash);
        match (found.next(), found.next()) {
            (None, _) => Asked::Nothing,
            (Some(&(_, (a, b))), None) => position_text(a, b, log, buf),
            (Some(_), Some(_)) => Asked::Unreadable,
        }
    }
}

/// A position as the topic's own id, written into `buf`.
fn position_text(a: u64, b: u64, log: bool, buf: &mut [u8; 48]) -> Asked<'_> {
    let id = if log {
        EventId::from_log(a, b)
    } else {
        EventId::memory(a, b)
    };
    let text = id.write(buf);
    // Our own digits: always UTF-8.
    std::str::from_utf8(text).map_or(Asked::Unreadable, Asked::Id)
}

/// The stream of a set's subscription (see the module documentation).
pub(super) struct SetStream {
    members: Vec<Member>,
    /// The hash of the set (see `set_hash`).
    set: u32,
    /// Gap events and the position event, written first.
    first: VecDeque<EncodedEvent>,
    wakes: Arc<Wakes>,
    /// The waker last given to `wakes` (to compare without its lock).
    task: Option<Waker>,
    /// The id of the positions written last.
    id: Id,
    /// The members (of the first 64) whose position moved since `id` was
    /// written, a bit each.
    moved: u64,
    /// Where the lines of an event not to copy are.
    skips: Vec<(usize, usize)>,
    /// Counted against the client's bound while it lives (given back on
    /// drop).
    _held: Option<super::client::Held>,
    /// Where the next event is written.
    buf: BytesMut,
    /// The last event written by any subscription to this set (`None`
    /// once the stream has left).
    share: Option<Arc<Share>>,
    /// How many members have an event peeked (none: nothing to write,
    /// without looking at every member).
    peeked: usize,
    /// Each member's peeked event's order stamp (`u64::MAX`: none), side
    /// by side: the earliest is found in one scan of this array, not of
    /// the members.
    orders: Vec<u64>,
}

impl SetStream {
    /// `asked`: the `Last-Event-ID` as sent, for the gap events' data.
    pub(super) fn new(
        shared: &Shared,
        opened: Vec<Opened>,
        asked: Option<&str>,
        client: Option<super::client::Held>,
    ) -> Self {
        let gaps: Vec<(usize, GapReason, Option<u64>)> = opened
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.gap.map(|(reason, missed)| (i, reason, missed)))
            .collect();
        let wakes = Arc::new(Wakes {
            // Every member marked: the first poll reads them all.
            marked: (0..opened.len().div_ceil(64))
                .map(|word| {
                    let bits = (opened.len() - word * 64).min(64);
                    AtomicU64::new(if bits == 64 {
                        u64::MAX
                    } else {
                        (1 << bits) - 1
                    })
                })
                .collect(),
            task: Mutex::new(None),
        });
        let members: Vec<Member> = opened
            .into_iter()
            .enumerate()
            .map(|(index, o)| Member {
                waker: Waker::from(Arc::new(MemberWake {
                    wakes: wakes.clone(),
                    index,
                })),
                hash: name_hash(&o.name),
                line: format!("event: {}\n", o.name).into(),
                topic: o.topic,
                next: o.next,
                slot: o.slot,
                position: (o.position.epoch, o.position.seq),
                start: o.start,
                peeked: None,
            })
            .collect();
        let set = set_hash(members.iter().map(Member::name));
        let mut first = VecDeque::new();
        let mut id = Vec::with_capacity(128);
        // Gap events first, with the positions to resume from: a gapped
        // topic's is before its history, which is replayed next.
        let fresh = members.iter().any(|m| m.start == Start::Fresh);
        for &(i, reason, missed) in &gaps {
            id.clear();
            write_id(set, members.iter().map(|m| (m.hash, m.position)), &mut id);
            first.push_back(gap_event(shared, &members[i], reason, missed, asked, &id));
        }
        if fresh || !gaps.is_empty() {
            id.clear();
            write_id(set, members.iter().map(|m| (m.hash, m.position)), &mut id);
            first.push_back(
                Event::new()
                    .event_type(EventType::from_static(super::POSITION_EVENT))
                    .trusted_id(&id)
                    .data("")
                    .encode(),
            );
        }
        Self {
            share: Some(shared.sets.join(set, &members)),
            peeked: 0,
            orders: vec![u64::MAX; members.len()],
            moved: 0,
            members,
            set,
            first,
            wakes,
            task: None,
            id: Id::default(),
            skips: Vec::new(),
            _held: client,
            buf: BytesMut::new(),
        }
    }

    pub(super) fn members(&self) -> &[Member] {
        &self.members
    }

    /// The next event to write, or what ends the stream.
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        if let Some(first) = self.first.pop_front() {
            return Poll::Ready(Next::Event(first));
        }
        // The shared waker is locked only when the task's changes.
        if !self
            .task
            .as_ref()
            .is_some_and(|task| task.will_wake(cx.waker()))
        {
            let waker = cx.waker().clone();
            *self.wakes.task() = Some(waker.clone());
            self.task = Some(waker);
        }
        // Read the marked members until a pass finds none marked: with more
        // than 64 members the words are taken one after another, and a
        // publish seen in a later word may follow one marked in an earlier
        // word after it was taken; the next pass sees that one, and the
        // earliest event is written first. One word is taken at once: one
        // pass (a mark after it wakes the task again).
        for _ in 0..4 {
            let mut any = false;
            for (word, marked) in self.wakes.marked.iter().enumerate() {
                let mut bits = marked.swap(0, Ordering::AcqRel);
                any |= bits != 0;
                while bits != 0 {
                    let i = word * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let member = &mut self.members[i];
                    if member.peeked.is_some() {
                        continue;
                    }
                    let mut member_cx = Context::from_waker(&member.waker);
                    match member
                        .topic
                        .poll_read(member.next, member.slot, &mut member_cx)
                    {
                        Poll::Ready(Read::Event(stored)) => {
                            self.orders[i] = stored.order;
                            member.peeked = Some(stored);
                            self.peeked += 1;
                        }
                        Poll::Ready(Read::Finished) | Poll::Pending => {}
                        Poll::Ready(Read::Lagged) => {
                            member.topic.lagged();
                            return Poll::Ready(Next::Lagged);
                        }
                        #[cfg(hub_log)]
                        Poll::Ready(Read::Unavailable) => return Poll::Ready(Next::Unavailable),
                    }
                }
            }
            if !any || self.wakes.marked.len() == 1 {
                break;
            }
        }
        if self.peeked == 0 {
            return Poll::Pending;
        }
        // The earliest peeked event (the first of equal stamps; a member
        // with none peeked is `MAX`, and one at least has one).
        let (mut i, mut earliest) = (0, u64::MAX);
        for (at, &order) in self.orders.iter().enumerate() {
            if order < earliest {
                (i, earliest) = (at, order);
            }
        }
        let member = &mut self.members[i];
        let Some(Stored {
            bytes,
            newest,
            plain,
            ..
        }) = member.peeked.take()
        else {
            return Poll::Pending;
        };
        self.orders[i] = u64::MAX;
        self.peeked -= 1;
        member.next += 1;
        // Its next event may be there already: read it on the next poll.
        self.wakes.marked[i / 64].fetch_or(1 << (i % 64), Ordering::AcqRel);
        let log = member.topic.is_fed();
        if !log {
            // The memory hub's id of the entry: the topic's epoch and the
            // entry's sequence number (no need to read it back).
            member.position = (member.topic.epoch, member.next - 1);
            self.moved |= 1u64.checked_shl(i as u32).unwrap_or(0);
            let shared = self.share.as_ref().filter(|_| newest);
            if let Some(event) = shared.and_then(|share| share.get(i, &self.members)) {
                return Poll::Ready(Next::Event(EncodedEvent::from_encoded(event)));
            }
        }
        let member = &mut self.members[i];
        // Shared with the other subscriptions of the set: a live event
        // (one replaying its history writes its own, and leaves the share
        // to the live ones) at positions that say which event it is (a
        // log's is read from the event).
        let mut share = newest && !log;
        // The lines not to copy (type and id), its own type, and its id (a
        // log's): a plain event's only such line is its last, the id the
        // hub wrote, of a length known from its position; any other is read
        // line by line.
        let mut own_type = None;
        self.skips.clear();
        let id_line = plain
            .then(|| memory_id_line(&bytes, member.position))
            .flatten();
        if let Some(at) = id_line {
            self.skips.push((at, bytes.len() - 1));
        } else {
            let mut start = 0;
            while start < bytes.len() {
                let end =
                    memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |at| start + at);
                let line = &bytes[start..end];
                if let Some(value) = field(line, b"event") {
                    // An empty type is the standard's `message`: untyped.
                    own_type =
                        (!value.is_empty()).then_some((start + line.len() - value.len(), end));
                    self.skips.push((start, end + 1));
                } else if let Some(value) = field(line, b"id") {
                    if log {
                        if let Some(position) = parse_position(value, true) {
                            member.position = position;
                            self.moved |= 1u64.checked_shl(i as u32).unwrap_or(0);
                            share = newest;
                        }
                    }
                    self.skips.push((start, end + 1));
                }
                start = end + 1;
            }
        }
        if share && log {
            if let Some(event) = self.share.as_ref().and_then(|s| s.get(i, &self.members)) {
                return Poll::Ready(Next::Event(EncodedEvent::from_encoded(event)));
            }
        }
        let member = &self.members[i];
        // Amortized: a few events share an allocation, many while the
        // stream replays its history. (A reserve of more than the room
        // left allocates, even when this event fits.)
        if newest && self.buf.capacity() > 1024 {
            // Caught up: the replay's room is let go before a live event
            // is written (the share may keep a live event for long, and
            // with it the block it is in).
            self.buf = BytesMut::new();
        }
        let need = bytes.len() + member.line.len() + 40 + 30 * self.members.len();
        if self.buf.capacity() - self.buf.len() < need {
            let room = if newest { 512 } else { 8 * 1024 };
            self.buf.reserve(need.max(room));
        }
        match own_type {
            None => self.buf.put_slice(member.line.as_bytes()),
            Some((from, to)) => {
                self.buf
                    .put_slice(&member.line.as_bytes()[..member.line.len() - 1]);
                self.buf.put_u8(b':');
                self.buf.put_slice(&bytes[from..to]);
                self.buf.put_u8(b'\n');
            }
        }
        // Every other line, without the blank line that ends the event.
        let body_end = bytes.len().saturating_sub(1);
        let mut copied = 0;
        for &(from, to) in &self.skips {
            if from > copied {
                self.buf.put_slice(&bytes[copied..from.min(body_end)]);
            }
            copied = to;
        }
        if copied < body_end {
            self.buf.put_slice(&bytes[copied..body_end]);
        }
        let members = &self.members;
        let id = match members.len() {
            ..=64 => self
                .id
                .text_moved(self.set, members.len(), self.moved, |i| {
                    (members[i].hash, members[i].position)
                }),
            _ => self
                .id
                .text(self.set, members.iter().map(|m| (m.hash, m.position))),
        };
        self.buf.put_slice(id);
        self.moved = 0;
        let event = self.buf.split().freeze();
        if share {
            if let Some(shared) = &self.share {
                shared.put(i, &self.members, &event);
            }
        }
        Poll::Ready(Next::Event(EncodedEvent::from_encoded(event)))
    }

    /// The subscription ends: every member leaves its topic, and the
    /// stream its set's share.
    pub(super) fn leave(&mut self, shared: &Shared, now: Instant) {
        for member in &self.members {
            member.topic.leave(member.slot, now);
        }
        if let Some(share) = self.share.take() {
            shared.sets.leave(share);
        }
    }
}

/// What a set's stream writes next.
pub(super) enum Next {
    Event(EncodedEvent),
    Lagged,
    #[cfg(hub_log)]
    Unavailable,
}

/// Where the id line of a plain event (see `Stored::plain`) of the memory
/// hub at `position` starts: its last line, the id the topic wrote for that
/// position (whose length `EventId::text_len` counts); `None` if the bytes
/// there say otherwise.
fn memory_id_line(bytes: &[u8], (epoch, seq): Position) -> Option<usize> {
    let len = EventId::memory(epoch, seq).text_len();
    // "id: ", the id, its line end and the blank line.
    let at = bytes.len().checked_sub(4 + len + 2)?;
    let starts_line = at == 0 || bytes[at - 1] == b'\n';
    (starts_line && bytes[at..].starts_with(b"id: ")).then_some(at)
}

/// The value of `line` if it is the field `name` (`name:`, then the value
/// after one optional space, as the standard reads it).
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let value = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// Reads an id the hub wrote: the memory hub's `<hex epoch>-<seq>`, or a
/// log's `<ms>-<seq>`.
fn parse_position(text: &[u8], log: bool) -> Option<Position> {
    let text = std::str::from_utf8(text).ok()?;
    let (a, b) = text.split_once('-')?;
    let a = if log {
        a.parse().ok()?
    } else {
        u64::from_str_radix(a, 16).ok()?
    };
    Some((a, b.parse().ok()?))
}

fn gap_event(
    shared: &Shared,
    member: &Member,
    reason: GapReason,
    missed: Option<u64>,
    asked: Option<&str>,
    id: &[u8],
) -> EncodedEvent {
    let mut data = String::with_capacity(128);
    data.push_str("{\"reason\":\"");
    data.push_str(reason.as_str());
    data.push_str("\",\"topic\":");
    super::json_string(&mut data, member.name());
    data.push_str(",\"last_event_id\":");
    // Echoed only when it could be a set's id: every topic's gap event
    // carries it, and a header of any length would be copied into each.
    match asked.filter(|asked| asked.len() <= MAX_ECHOED_ID_LEN) {
        Some(asked) => super::json_string(&mut data, asked),
        None => data.push_str("null"),
    }
    if let Some(missed) = missed {
        data.push_str(",\"missed\":");
        data.push_str(&missed.to_string());
    }
    data.push('}');
    let event = match Event::new().event(&*shared.config.gap_event) {
        Ok(event) => event,
        // Checked when the hub was built.
        Err(error) => error.into_event(),
    };
    event.trusted_id(id).data(data).encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_ids_read_back_what_they_wrote() {
        let positions = vec![
            (name_hash("ticks"), (0x3fa9_c0d2_e1b7, 42)),
            (name_hash("notes"), (0x3fa9_c0d2_e1b9, 0)),
            (name_hash("user:7"), (0, u64::MAX)),
        ];
        let mut id = Vec::new();
        write_id(0xfeed_beef, positions.iter().copied(), &mut id);
        assert_eq!(read_id(&id), Some((0xfeed_beef, positions)));
        assert!(id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(b)));
    }

    #[test]
    fn base64_reads_back_what_it_wrote_at_every_length() {
        let bytes: Vec<u8> = (0..200u32).map(|i| (i * 167 + 13) as u8).collect();
        for len in 0..bytes.len() {
            let mut text = Vec::new();
            base64_encode(&bytes[..len], &mut text);
            assert_eq!(text.len(), (len * 4).div_ceil(3), "{len}");
            assert_eq!(
                base64_decode(&text).as_deref(),
                Some(&bytes[..len]),
                "{len}"
            );
        }
    }

    #[test]
    fn an_id_kept_between_events_is_the_id_written_whole() {
        // Ten memory topics (epochs apart) and a log's (a time), moved one
        // at a time as a set's events move them: sequence numbers across
        // the varints' 128 and 16,384, an epoch that changes, a time.
        let mut positions: Vec<(u16, Position)> = (0..10u64)
            .map(|i| {
                (
                    name_hash(&format!("t{i}")),
                    (0x3fa9_c0d2_0000 + i * 77_777, 120),
                )
            })
            .chain([(name_hash("log"), (1_796_000_000_000, 0))])
            .collect();
        let mut id = Id::default();
        // The same, told which topics moved (a few moves between ids, as
        // when a set's subscription took shared events in between).
        let mut told = Id::default();
        let mut moved = 0u64;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..20_000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % positions.len() as u64) as usize;
            let (a, b) = &mut positions[i].1;
            match (step % 997, i) {
                (0, _) => *a += 1,         // a new epoch
                (_, 10) => *a += seed % 3, // a log's time
                _ => *b += 1 + seed % 40,
            }
            moved |= 1 << i;
            // The id's line, as an event carries it.
            let mut whole = b"id: ".to_vec();
            write_id(0xfeed_beef, positions.iter().copied(), &mut whole);
            whole.extend_from_slice(b"\n\n");
            let kept = id.text(0xfeed_beef, positions.iter().copied());
            assert_eq!(kept, &whole[..], "step {step}");
            if seed % 4 != 0 {
                let kept = told.text_moved(0xfeed_beef, positions.len(), moved, |i| positions[i]);
                assert_eq!(kept, &whole[..], "step {step}, told");
                moved = 0;
            }
        }
    }

    #[test]
    fn ten_topic_ids_fit_in_128_bytes() {
        // Redis ids a day apart at most, sequences below 128.
        let now = 1_796_000_000_000u64;
        let positions: Vec<_> = (0..10)
            .map(|i| (name_hash(&format!("topic-{i}")), (now - i * 8_640_000, i)))
            .collect();
        let mut id = Vec::new();
        write_id(set_hash(["x"].into_iter()), positions.into_iter(), &mut id);
        eprintln!("ten Redis positions up to a day apart: {} bytes", id.len());
        assert!(id.len() <= 128, "{} bytes", id.len());
        // The memory hub: epochs of one hub, sequences below 2^21.
        let epoch = 0xfedc_ba98_7654u64;
        let positions: Vec<_> = (0..10)
            .map(|i| (name_hash(&format!("topic-{i}")), (epoch + i, 2_000_000 + i)))
            .collect();
        let mut id = Vec::new();
        write_id(set_hash(["x"].into_iter()), positions.into_iter(), &mut id);
        eprintln!(
            "ten memory positions, sequences near 2^21: {} bytes",
            id.len()
        );
        assert!(id.len() <= 128, "{} bytes", id.len());
    }

    #[test]
    fn malformed_set_ids_are_refused_not_misread() {
        for bad in [
            &b""[..],
            b"t",
            b"tA",
            b"x0",
            b"t!!!!",
            b"tAB",
            b"t_w",
            b"3fa9-1",
        ] {
            assert_eq!(read_id(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b't']
            .into_iter()
            .chain([b'A'; 2 * MAX_SET_ID_LEN])
            .collect::<Vec<_>>();
        assert_eq!(read_id(&long), None);
    }

    #[test]
    fn query_strings_give_sets_of_decoded_names() {
        let set = TopicSet::from_query(Some("topic=b&x=1&topic=a%3A1&topic=b&topic=c+d"), "topic")
            .unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), ["a:1", "b", "c d"]);
        for bad in [
            None,
            Some(""),
            Some("x=1"),
            Some("topic="),
            Some("topic=%0A"),
            Some("topic=%zz"),
            Some("topic=%ff"),
            Some("topic=a%+9"),
        ] {
            let error = TopicSet::from_query(bad, "topic").unwrap_err();
            assert_eq!(error.kind(), HubErrorKind::BadTopic, "{bad:?}");
        }
        let many = (0..=MAX_TOPICS_PER_SUBSCRIPTION)
            .map(|i| format!("topic={i}"))
            .collect::<Vec<_>>()
            .join("&");
        let error = TopicSet::from_query(Some(&many), "topic").unwrap_err();
        assert_eq!(error.kind(), HubErrorKind::BadTopic);
        let long = format!("topic={}", "a".repeat(MAX_TOPIC_LEN + 1));
        let error = TopicSet::from_query(Some(&long), "topic").unwrap_err();
        assert_eq!(error.kind(), HubErrorKind::TopicTooLong);
    }

    #[test]
    fn twin_hashes_are_told_apart_by_the_set_that_wrote_the_id() {
        // Found by the demo's tests: user names pick topic names, and these
        // share a 16-bit hash with the demo's own topics.
        assert_eq!(name_hash("user:oor"), name_hash("ticks"));
        assert_eq!(name_hash("user:eovn"), name_hash("notes"));
        let set = TopicSet::new(["ticks", "user:oor"]).unwrap();
        let positions: Vec<(u16, Position)> =
            set.iter().map(|name| (name_hash(name), (7, 3))).collect();
        let mut id = Vec::new();
        write_id(set_hash(set.iter()), positions.into_iter(), &mut id);
        let asked = AskedSet::from_bytes(Some(&id));
        for name in set.iter() {
            let mut buf = [0; 48];
            assert!(
                matches!(asked.asked(name, &set, false, &mut buf), Asked::Id("7-3")),
                "{name}"
            );
        }
        // Another set holding both twins cannot tell them apart: a gap each.
        let other = TopicSet::new(["ticks", "user:oor", "notes"]).unwrap();
        let mut buf = [0; 48];
        assert!(matches!(
            asked.asked("ticks", &other, false, &mut buf),
            Asked::Unreadable
        ));
    }

    #[test]
    fn a_check_names_the_first_topic_refused() {
        let set = TopicSet::new(["ticks", "user:1", "user:2"]).unwrap();
        let error = set.clone().check(|t| t != "user:2").unwrap_err();
        assert_eq!(error.kind(), HubErrorKind::NotAllowed);
        assert!(error.to_string().contains("user:2"), "{error}");
        assert_eq!(set.clone().check(|_| true).unwrap(), set);
    }

    #[test]
    fn a_plain_event_s_id_line_is_found_from_its_position_at_every_digit_width() {
        let epochs = [0, 0xf, 0x10, 0xfff_ffff_ffff, 0x1000_0000_0000, u64::MAX];
        let seqs = [0, 9, 10, 99, 100, 999_999, u64::MAX];
        for epoch in epochs {
            for seq in seqs {
                for fields in ["", "data: x\n", ": c\ndata: id: 1-2\nretry: 5\n"] {
                    let id = format!("id: {epoch:x}-{seq}\n");
                    let event = format!("{fields}{id}\n");
                    let at = memory_id_line(event.as_bytes(), (epoch, seq));
                    assert_eq!(at, Some(fields.len()), "{event:?}");
                    // Another position: the check finds no id line there.
                    let other = memory_id_line(event.as_bytes(), (epoch, seq / 10));
                    assert!(seq < 10 || other.is_none(), "{event:?}");
                }
            }
        }
        // Shorter than an id line: nothing.
        assert_eq!(memory_id_line(b"\n", (0, 0)), None);
    }
}
