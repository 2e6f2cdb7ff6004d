//! Reading a model's Server-Sent Events incrementally, in the task that consumes them: bytes in
//! as they arrive, each complete event's `data` out. It follows the SSE parsing rules a model's
//! stream can exercise (`\n`, `\r\n` or `\r` line ends, comments, multi-line data joined with
//! `\n`, a leading space after the colon removed, events without data not dispatched) and keeps
//! the `event:` name only to skip the `keepalive` events some OpenAI-compatible servers send.
//!
//! It replaces a spawned reader task and a channel per stream: every chunk used to cost one more
//! task wake-up and a cross-thread hand-over before the run saw it.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// One dispatched event: its data (without the trailing newline) and its name, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseData {
    pub event: Option<String>,
    pub data: Bytes,
}

/// An upstream sending this much without ending a line is not an event stream.
const MAX_LINE: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct SseReader {
    buf: BytesMut,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    /// The last line ended with `\r`: a `\n` starting the next bytes belongs to it.
    after_cr: bool,
    ready: VecDeque<SseData>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct LineTooLong;

impl SseReader {
    /// Feeds bytes; complete events become available from `pop`.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        self.buf.extend_from_slice(bytes);
        loop {
            if self.after_cr && self.buf.first() == Some(&b'\n') {
                self.buf.advance(1);
            }
            self.after_cr = false;
            let Some(end) = memchr::memchr2(b'\n', b'\r', &self.buf) else { break };
            self.after_cr = self.buf[end] == b'\r';
            let line = self.buf.split_to(end + 1);
            self.line(&line[..end]);
        }
        if self.buf.len() > MAX_LINE { Err(LineTooLong) } else { Ok(()) }
    }

    /// The next complete event, in order.
    pub fn pop(&mut self) -> Option<SseData> {
        self.ready.pop_front()
    }

    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            let event = self.event.take();
            if self.has_data {
                self.has_data = false;
                let data = Bytes::from(std::mem::take(&mut self.data));
                self.ready.push_back(SseData { event, data });
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.has_data = true;
                self.data.extend_from_slice(value);
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(parts: &[&[u8]]) -> Vec<(Option<String>, String)> {
        let mut r = SseReader::default();
        let mut out = Vec::new();
        for p in parts {
            r.push(p).unwrap();
            while let Some(ev) = r.pop() {
                out.push((ev.event, String::from_utf8(ev.data.to_vec()).unwrap()));
            }
        }
        out
    }

    #[test]
    fn events_split_anywhere_come_out_whole_and_in_order() {
        let whole = b"data: {\"a\":1}\n\n: comment\n\ndata: two\n\ndata: [DONE]\n\n";
        let expected = vec![(None, "{\"a\":1}".to_string()), (None, "two".into()), (None, "[DONE]".into())];
        for cut in 0..whole.len() {
            assert_eq!(read(&[&whole[..cut], &whole[cut..]]), expected, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(read(&bytes), expected);
    }

    #[test]
    fn any_line_ending_works_even_when_a_crlf_is_split() {
        assert_eq!(read(&[b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"]), vec![(None, "a".into()), (None, "b".into()), (None, "c".into())]);
        assert_eq!(read(&[b"data: a\r", b"\n\r", b"\n"]), vec![(None, "a".into())]);
    }

    #[test]
    fn data_lines_join_names_stay_and_dataless_events_are_not_dispatched() {
        assert_eq!(
            read(&[b"event: keepalive\n\nevent: x\ndata:no-space\ndata: two\nid: 3\nretry: 5\n\n"]),
            vec![(Some("x".into()), "no-space\ntwo".into())]
        );
        assert_eq!(read(&[b"data\n\n"]), vec![(None, String::new())]);
    }
}
