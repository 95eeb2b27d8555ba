use std::time::Duration;

use super::*;

fn bytes(event: Event) -> String {
    String::from_utf8(event.encode().into_bytes().to_vec()).unwrap()
}

#[test]
fn data_lines_split_at_lf() {
    assert_eq!(
        bytes(Event::new().data("a\nb\nc")),
        "data: a\ndata: b\ndata: c\n\n"
    );
}

#[test]
fn data_lines_split_at_lone_cr() {
    assert_eq!(bytes(Event::new().data("a\rb")), "data: a\ndata: b\n\n");
}

#[test]
fn crlf_is_one_line_end_never_two() {
    assert_eq!(bytes(Event::new().data("a\r\nb")), "data: a\ndata: b\n\n");
    // CR CR LF is a lone CR and then a CRLF: three lines, one empty.
    assert_eq!(
        bytes(Event::new().data("a\r\r\nb")),
        "data: a\ndata:\ndata: b\n\n"
    );
    // LF CR is two line ends.
    assert_eq!(
        bytes(Event::new().data("a\n\rb")),
        "data: a\ndata:\ndata: b\n\n"
    );
}

#[test]
fn trailing_line_break_ends_with_an_empty_data_line() {
    assert_eq!(bytes(Event::new().data("a\n")), "data: a\ndata:\n\n");
    assert_eq!(bytes(Event::new().data("a\r\n")), "data: a\ndata:\n\n");
    assert_eq!(bytes(Event::new().data("\n")), "data:\ndata:\n\n");
}

#[test]
fn unicode_line_separators_are_not_line_ends() {
    let text = "a\u{2028}b\u{2029}c\u{0085}d\u{000B}e\u{000C}f";
    assert_eq!(bytes(Event::new().data(text)), format!("data: {text}\n\n"));
}

#[test]
fn empty_data_still_writes_a_data_line() {
    assert_eq!(bytes(Event::new().data("")), "data:\n\n");
}

#[test]
fn event_type_without_data_gets_an_empty_data_line() {
    assert_eq!(
        bytes(Event::new().event("ping").unwrap()),
        "event: ping\ndata:\n\n"
    );
    // With data, no extra line.
    assert_eq!(
        bytes(Event::new().event("ping").unwrap().data("x")),
        "event: ping\ndata: x\n\n"
    );
}

#[test]
fn id_only_retry_only_and_comment_only_blocks_are_written_as_they_are() {
    assert_eq!(bytes(Event::new().id("7").unwrap()), "id: 7\n\n");
    assert_eq!(
        bytes(Event::new().retry(Duration::from_millis(1500))),
        "retry: 1500\n\n"
    );
    assert_eq!(bytes(Event::new().comment("hello")), ": hello\n\n");
}

#[test]
fn leading_space_in_a_value_survives() {
    assert_eq!(bytes(Event::new().data(" x")), "data:  x\n\n");
    assert_eq!(bytes(Event::new().data("a\n  b")), "data: a\ndata:   b\n\n");
    assert_eq!(
        bytes(Event::new().event(" t").unwrap().id(" 1").unwrap().data("")),
        "event:  t\nid:  1\ndata:\n\n"
    );
}

#[test]
fn colons_in_values_are_written_as_they_are() {
    assert_eq!(
        bytes(Event::new().data("data: x: y").id("a:b").unwrap()),
        "data: data: x: y\nid: a:b\n\n"
    );
}

#[test]
fn id_with_cr_lf_or_nul_is_refused_naming_the_field() {
    for (bad, kind) in [
        ("1\n2", EventErrorKind::IdLineBreak),
        ("1\r2", EventErrorKind::IdLineBreak),
        ("1\r\n2", EventErrorKind::IdLineBreak),
        ("\n", EventErrorKind::IdLineBreak),
        ("1\u{0}2", EventErrorKind::IdNul),
    ] {
        let error = Event::new().id(bad).unwrap_err();
        assert_eq!(error.kind(), kind, "{bad:?}");
        assert!(error.to_string().contains("`id`"), "{error}");
    }
}

#[test]
fn event_type_with_cr_or_lf_is_refused_naming_the_field() {
    for bad in ["a\nb", "a\rb", "\r\n", "tick\ndata: forged"] {
        let error = Event::new().event(bad).unwrap_err();
        assert_eq!(error.kind(), EventErrorKind::TypeLineBreak);
        assert!(error.to_string().contains("`event`"), "{error}");
    }
    // NUL is harmless in a type: the browser keeps it.
    assert_eq!(
        bytes(Event::new().event("a\u{0}b").unwrap().data("x")),
        "event: a\u{0}b\ndata: x\n\n"
    );
}

#[test]
fn empty_id_is_written_and_differs_from_no_id() {
    assert_eq!(
        bytes(Event::new().id("").unwrap().data("x")),
        "id:\ndata: x\n\n"
    );
    assert_eq!(bytes(Event::new().data("x")), "data: x\n\n");
}

#[test]
fn retry_is_whole_milliseconds() {
    assert_eq!(
        bytes(Event::new().retry(Duration::from_micros(2_999_999))),
        "retry: 2999\n\n"
    );
    assert_eq!(bytes(Event::new().retry(Duration::ZERO)), "retry: 0\n\n");
    // Clamped to what a browser's timer holds: 2^31 - 1 ms.
    for long in [
        MAX_RETRY,
        MAX_RETRY + Duration::from_millis(1),
        Duration::from_secs(u64::MAX / 2),
        Duration::MAX,
    ] {
        assert_eq!(
            bytes(Event::new().retry(long)),
            "retry: 2147483647\n\n",
            "{long:?}"
        );
    }
}

#[test]
fn a_refused_value_gives_the_event_back_with_everything_set() {
    let built = || {
        Event::new()
            .event("tick")
            .unwrap()
            .data("kept")
            .retry(Duration::from_secs(1))
    };
    let error = built().id("a\nb").unwrap_err();
    assert_eq!(bytes(error.into_event()), bytes(built()));
    let error = built().event("a\rb").unwrap_err();
    let event = error.into_event().id("7").unwrap();
    assert_eq!(
        bytes(event),
        "event: tick\ndata: kept\nretry: 1000\nid: 7\n\n"
    );
}

#[test]
fn comment_with_line_breaks_becomes_several_comment_lines() {
    assert_eq!(
        bytes(Event::new().comment("a\nb\r\nc\rdata: forged")),
        ": a\n: b\n: c\n: data: forged\n\n"
    );
    assert_eq!(bytes(Event::new().comment("")), ":\n\n");
}

#[test]
fn every_event_ends_with_a_blank_line() {
    assert_eq!(bytes(Event::new()), "\n");
    assert!(bytes(Event::new().data("x").comment("c")).ends_with("\n\n"));
}

#[test]
fn output_has_lowercase_fields_lf_only_and_no_bom() {
    let out = bytes(
        Event::new()
            .comment("c")
            .event("E")
            .unwrap()
            .id("I")
            .unwrap()
            .retry(Duration::from_secs(1))
            .data("\u{feff}x\r\ny"),
    );
    assert_eq!(
        out,
        ": c\nevent: E\nid: I\nretry: 1000\ndata: \u{feff}x\ndata: y\n\n"
    );
    assert!(!out.contains('\r'));
    assert!(!out.starts_with('\u{feff}'));
}

#[test]
fn data_called_twice_adds_lines() {
    assert_eq!(
        bytes(Event::new().data("a").data("b")),
        "data: a\ndata: b\n\n"
    );
}

#[cfg(feature = "json")]
#[test]
fn json_data_is_one_data_line() {
    let value = serde_json::json!({"text": "line\nbreak\r\n", "n": 1});
    let out = bytes(Event::new().json_data(&value).unwrap());
    assert_eq!(out, format!("data: {value}\n\n"));
    assert_eq!(out.matches('\n').count(), 2);
}

#[cfg(feature = "json")]
#[test]
fn json_data_that_cannot_be_serialized_is_an_error_that_gives_the_event_back() {
    let mut map = std::collections::HashMap::new();
    map.insert(vec![1u8], 1);
    let built = || Event::new().event("update").unwrap().id("7").unwrap();
    let error = built().json_data(&map).unwrap_err();
    assert!(error.to_string().contains("JSON"), "{error}");
    assert!(std::error::Error::source(&error).is_some());
    // Nothing of the refused value stays in the event.
    assert_eq!(bytes(error.into_event()), bytes(built()));
}

#[test]
fn line_break_finder_agrees_with_a_plain_search() {
    let mut text = vec![b'x'; 100];
    assert_eq!(find_line_break(&text), None);
    for at in 0..text.len() {
        for brk in [b'\n', b'\r'] {
            text[at] = brk;
            assert_eq!(find_line_break(&text), Some(at));
            assert_eq!(find_line_break(&text[..at]), None);
            text[at] = b'x';
        }
    }
}

#[test]
fn encoded_event_clones_share_bytes() {
    let a = Event::new().data("x").encode();
    let b = a.clone();
    assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
}

#[test]
fn an_event_is_one_word_and_sendable() {
    // Events are moved by value through streams: the body's speed depends
    // on this (see `Event::inner`).
    assert_eq!(std::mem::size_of::<Event>(), std::mem::size_of::<usize>());
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Event>();
    send_sync::<EncodedEvent>();
}

#[test]
fn an_event_built_on_a_recycled_encoding_starts_empty() {
    // A typed event without data, encoded, leaves its (emptied) encoding as
    // the spare: the next event must not inherit its bytes or its flags.
    let typed = Event::new().event("t").unwrap().id("7").unwrap();
    assert_eq!(bytes(typed), "event: t\nid: 7\ndata:\n\n");
    assert_eq!(bytes(Event::new().id("8").unwrap()), "id: 8\n\n");
    assert_eq!(bytes(Event::new()), "\n");
    let cloned = Event::new().data("a");
    assert_eq!(bytes(cloned.clone().data("b")), "data: a\ndata: b\n\n");
    assert_eq!(bytes(cloned), "data: a\n\n");
}

#[cfg(feature = "layers")]
#[test]
fn boundary_after_a_frame_agrees_with_reading_it_byte_by_byte() {
    // Every string of up to 7 bytes over {x, CR, LF}, from every state:
    // the shortcuts of `after` (the tail alone, a frame ending in two LFs)
    // must land where stepping through every byte lands.
    let starts = [
        Boundary::Between,
        Boundary::LineStart,
        Boundary::MidLine,
        Boundary::AfterCr { between: true },
        Boundary::AfterCr { between: false },
    ];
    let alphabet = [b'x', b'\r', b'\n'];
    let mut checked = 0;
    for len in 0..=7u32 {
        for code in 0..3usize.pow(len) {
            let mut bytes = Vec::new();
            let mut rest = code;
            for _ in 0..len {
                bytes.push(alphabet[rest % 3]);
                rest /= 3;
            }
            for start in starts {
                let stepped = bytes.iter().fold(start, |state, &b| state.step(b));
                assert_eq!(start.after(&bytes), stepped, "{start:?} then {bytes:?}");
                checked += 1;
            }
        }
    }
    assert!(checked > 10_000);
}

#[test]
fn the_quick_line_break_check_misses_no_control_byte_at_any_length_or_place() {
    for len in 0..=40 {
        let clean = vec![b'~'; len];
        assert!(!may_hold_line_break(&clean), "clean text of {len}");
        for place in 0..len {
            for byte in 0..=255u8 {
                let mut text = clean.clone();
                text[place] = byte;
                // Every byte up to CR must be caught; others (UTF-8 lead and
                // continuation bytes included) must not be.
                assert_eq!(
                    may_hold_line_break(&text),
                    byte <= b'\r',
                    "byte {byte} at {place} of {len}"
                );
            }
        }
    }
}

/// The room of the buffer that the next event built on this thread starts
/// with (it comes from the thread's spare).
fn room_of_next_event() -> usize {
    let event = Event::new().data("x");
    event
        .inner
        .as_ref()
        .map_or(0, |encoding| encoding.buf.capacity())
}

#[test]
fn an_encoded_event_leaves_the_next_one_room_to_be_written_in() {
    let encoded = Event::new()
        .event("update")
        .unwrap()
        .data("x".repeat(64))
        .encode();
    assert_eq!(
        encoded.as_bytes().len(),
        "event: update\ndata: \n\n".len() + 64
    );
    assert!(room_of_next_event() >= FIRST_CAPACITY);
    // A buffer too large to keep becomes the bytes, and a small one takes
    // its place.
    let large = Event::new().data("y".repeat(2 * SPARE_MAX)).encode();
    assert_eq!(large.as_bytes().len(), "data: \n\n".len() + 2 * SPARE_MAX);
    assert!(large.as_bytes()[6..6 + 2 * SPARE_MAX]
        .iter()
        .all(|&b| b == b'y'));
    let room = room_of_next_event();
    assert!((FIRST_CAPACITY..=SPARE_MAX).contains(&room), "{room}");
}

#[test]
fn an_event_written_as_a_frame_of_its_own_leaves_the_next_one_room() {
    use http_body::Body as _;
    let events = futures_util::stream::iter([Event::new().data("x".repeat(64))]);
    let mut body = std::pin::pin!(crate::EventStream::new(events).max_frame_size(0));
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let frame = match body.as_mut().poll_frame(&mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap(),
        other => panic!("expected a frame, got {other:?}"),
    };
    assert_eq!(
        &frame[..],
        format!("data: {}\n\n", "x".repeat(64)).as_bytes()
    );
    assert!(room_of_next_event() >= FIRST_CAPACITY);
}

#[test]
fn a_cloned_event_encoded_leaves_the_next_one_room() {
    // A clone's buffer is as long as its bytes: too small to start the
    // next event in.
    let event = Event::new().data("x");
    assert_eq!(event.clone().encode().as_bytes(), b"data: x\n\n");
    assert!(room_of_next_event() >= FIRST_CAPACITY);
    drop(event);
}

#[test]
fn a_number_id_is_written_in_decimal_like_its_text() {
    for n in [0, 1, 9, 10, 99, 100, 4_294_967_296, u64::MAX] {
        assert_eq!(
            bytes(Event::new().id_number(n)),
            bytes(Event::new().id(n.to_string()).unwrap()),
            "{n}"
        );
    }
    assert_eq!(
        bytes(Event::new().id_number(u64::MAX)),
        "id: 18446744073709551615\n\n"
    );
}

#[test]
fn a_static_event_type_is_written_like_its_text() {
    const TICK: EventType = EventType::from_static("tick");
    assert_eq!(TICK.as_str(), "tick");
    assert_eq!(
        bytes(Event::new().event_type(TICK).data("1")),
        bytes(Event::new().event("tick").unwrap().data("1"))
    );
}

#[test]
#[should_panic(expected = "CR or LF")]
fn a_static_event_type_with_a_line_break_panics_where_it_is_made() {
    let _ = EventType::from_static(std::hint::black_box("tick\ndata: forged"));
}
