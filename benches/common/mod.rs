//! Draining a body in memory, shared by the benches.
#![allow(dead_code)] // each bench uses part of it

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use http_body::Body;

/// Polls `body` to its end and returns how many bytes it wrote.
pub fn drain<B>(body: B) -> usize
where
    B: Body,
    B::Data: bytes::Buf,
    B::Error: std::fmt::Debug,
{
    drain_into(body, |_| {})
}

/// Polls `body` to its end, handing each data frame to `sink`.
pub fn drain_into<B>(body: B, mut sink: impl FnMut(&[u8])) -> usize
where
    B: Body,
    B::Data: bytes::Buf,
    B::Error: std::fmt::Debug,
{
    let mut body = std::pin::pin!(body);
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut written = 0;
    loop {
        match Pin::as_mut(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(frame)) => {
                if let Ok(data) = frame.unwrap().into_data() {
                    written += bytes::Buf::remaining(&data);
                    sink(bytes::Buf::chunk(&data));
                }
            }
            Poll::Ready(None) => return written,
            Poll::Pending => unreachable!("in-memory streams are always ready"),
        }
    }
}
