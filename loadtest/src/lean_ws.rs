//! The supervisor crowd's WebSocket client: one read buffer per socket, reused for the socket's
//! life, and frames read in place.
//!
//! The crowd shares the two cores with the hub it measures, so what a socket costs here is
//! taken from the hub. With tokio-tungstenite, reading one ~400-byte frame zeroed the whole
//! read buffer first (8 KiB, on every read, including the one that finds nothing) and
//! allocated for the frame: at 1,000 supervisors that zeroing, allocating and framing was about
//! a sixth of the load generator's own samples (perf, `loadtest fanout`). This client does only
//! what a supervisor needs (RFC 6455): the opening handshake, text messages (fragmented or
//! not), a pong for every ping, and the close handshake. The hub is the server: its frames
//! come unmasked, ours go masked.

use std::hash::{BuildHasher, Hasher};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Any fixed key does: it only proves the server speaks WebSocket (RFC 6455 §4.1).
const KEY: &str = "bG9hZHRlc3Qtc3VwZXJ2aXNyAA==";
/// The response head must fit in this.
const MAX_HEAD: usize = 16 * 1024;
/// A frame or message larger than this is an error (a `calls` snapshot is the largest frame).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// What `next` read.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole text message.
    Text(&'a [u8]),
    /// The server's close frame: its code (1005 when it gave none) and reason.
    Close(u16, String),
    /// A binary message: the hub sends none; counted by the caller, not read.
    Binary,
    /// The connection ended without a close frame.
    End,
}

/// Where the next message is, once `next`'s loop found it.
enum Found {
    InBuffer(usize, usize),
    Assembled,
    Close(u16, String),
    Binary,
    End,
}

pub struct LeanWs {
    stream: TcpStream,
    buf: BytesMut,
    /// Bytes of `buf` the last returned frame occupies: dropped when `next` is called again.
    consumed: usize,
    /// A text message that came in fragments: the part so far while `in_message`, then the
    /// whole of it.
    message: Vec<u8>,
    in_message: bool,
    read_size: usize,
    mask: [u8; 4],
}

impl LeanWs {
    /// Connects to `ws://host:port/path?query` and completes the opening handshake.
    pub async fn connect(url: &str, read_size: usize) -> Result<LeanWs, String> {
        let rest = url.strip_prefix("ws://").ok_or("only ws:// URLs are supported")?;
        let (authority, target) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        let mut stream = TcpStream::connect(authority).await.map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.map_err(|e| format!("handshake: {e}"))?;
        let read_size = read_size.max(512);
        let mut buf = BytesMut::with_capacity(read_size);
        let head_len = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return Err("handshake: the response head is too long".into());
            }
            buf.reserve(read_size);
            if stream.read_buf(&mut buf).await.map_err(|e| format!("handshake: {e}"))? == 0 {
                return Err("handshake: the connection ended".into());
            }
        };
        check_response(&buf[..head_len])?;
        buf.advance(head_len);
        // A fresh `RandomState` has random keys: its hasher's output is a random mask.
        let mask = (std::collections::hash_map::RandomState::new().build_hasher().finish() as u32).to_ne_bytes();
        Ok(LeanWs { stream, buf, consumed: 0, message: Vec::new(), in_message: false, read_size, mask })
    }

    /// The next message. A ping is answered and not returned; so is a pong.
    pub async fn next(&mut self) -> Result<Frame<'_>, String> {
        self.buf.advance(std::mem::take(&mut self.consumed));
        let found = loop {
            if let Some(h) = parse_header(&self.buf)? {
                let whole = h.header + h.len;
                if self.buf.len() >= whole {
                    let payload = h.header..whole;
                    match h.opcode {
                        OP_TEXT if h.fin && !self.in_message => {
                            self.consumed = whole;
                            break Found::InBuffer(payload.start, payload.end);
                        }
                        OP_TEXT | OP_CONTINUATION => {
                            match (self.in_message, h.opcode) {
                                (false, OP_TEXT) => self.message.clear(),
                                (true, OP_CONTINUATION) if self.message.len() + h.len <= MAX_MESSAGE => {}
                                (true, OP_CONTINUATION) => return Err("a fragmented message is too large".into()),
                                _ => return Err("a frame out of its message's order".into()),
                            }
                            self.message.extend_from_slice(&self.buf[payload]);
                            self.buf.advance(whole);
                            self.in_message = !h.fin;
                            if h.fin {
                                break Found::Assembled;
                            }
                            continue;
                        }
                        OP_BINARY => {
                            self.buf.advance(whole);
                            break Found::Binary;
                        }
                        OP_CLOSE => {
                            let p = &self.buf[payload];
                            let code = if p.len() >= 2 { u16::from_be_bytes([p[0], p[1]]) } else { 1005 };
                            let reason = p.get(2..).map(|r| String::from_utf8_lossy(r).into_owned()).unwrap_or_default();
                            self.buf.advance(whole);
                            break Found::Close(code, reason);
                        }
                        OP_PING => {
                            let body = self.buf[payload].to_vec();
                            self.buf.advance(whole);
                            self.send(OP_PONG, &body).await.map_err(|e| format!("pong: {e}"))?;
                            continue;
                        }
                        OP_PONG => {
                            self.buf.advance(whole);
                            continue;
                        }
                        other => return Err(format!("unknown opcode {other:#x}")),
                    }
                }
                self.buf.reserve(whole.saturating_sub(self.buf.len()).max(self.read_size));
            } else {
                self.buf.reserve(self.read_size);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => break Found::End,
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        };
        Ok(match found {
            Found::InBuffer(from, to) => Frame::Text(&self.buf[from..to]),
            Found::Assembled => Frame::Text(&self.message),
            Found::Close(code, reason) => Frame::Close(code, reason),
            Found::Binary => Frame::Binary,
            Found::End => Frame::End,
        })
    }

    pub async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        self.send(OP_TEXT, text.as_bytes()).await
    }

    /// Sends our close frame (1000); the caller reads until the server's answer or the end.
    pub async fn send_close(&mut self) -> std::io::Result<()> {
        self.send(OP_CLOSE, &1000u16.to_be_bytes()).await
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let frame = client_frame(opcode, payload, self.mask);
        self.stream.write_all(&frame).await
    }
}

/// `101 Switching Protocols` with the accept key our key calls for.
fn check_response(head: &[u8]) -> Result<(), String> {
    let head = std::str::from_utf8(head).map_err(|_| "handshake: the response head is not text")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("handshake: {}", status.chars().take(200).collect::<String>()));
    }
    let expected = tokio_tungstenite::tungstenite::handshake::derive_accept_key(KEY.as_bytes());
    let accepted = lines
        .filter_map(|l| l.split_once(':'))
        .any(|(name, value)| name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected);
    if accepted { Ok(()) } else { Err("handshake: missing or wrong Sec-WebSocket-Accept".into()) }
}

#[derive(Debug, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: u8,
    /// Bytes of the header itself.
    header: usize,
    /// Bytes of the payload.
    len: usize,
}

/// A server frame's header, `None` until all of it is in `b`.
fn parse_header(b: &[u8]) -> Result<Option<Header>, String> {
    let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err("a frame with reserved bits set (no extension was agreed)".into());
    }
    if b1 & 0x80 != 0 {
        return Err("a masked frame from the server".into());
    }
    let (header, len) = match b1 & 0x7f {
        126 => match b.get(2..4) {
            Some(l) => (4, u16::from_be_bytes([l[0], l[1]]) as u64),
            None => return Ok(None),
        },
        127 => match b.get(2..10).and_then(|l| <[u8; 8]>::try_from(l).ok()) {
            Some(l) => (10, u64::from_be_bytes(l)),
            None => return Ok(None),
        },
        n => (2, n as u64),
    };
    if len > MAX_MESSAGE as u64 {
        return Err(format!("a frame of {len} bytes"));
    }
    let opcode = b0 & 0x0f;
    let fin = b0 & 0x80 != 0;
    if opcode >= OP_CLOSE && (!fin || len > 125) {
        return Err("a control frame fragmented or longer than 125 bytes".into());
    }
    Ok(Some(Header { fin, opcode, header, len: len as usize }))
}

/// One whole masked frame from the client.
fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

    #[test]
    fn headers_of_every_length_form_parse_and_partial_ones_wait() {
        assert_eq!(parse_header(&[0x81]).unwrap(), None);
        assert_eq!(parse_header(&[0x81, 5]).unwrap(), Some(Header { fin: true, opcode: 1, header: 2, len: 5 }));
        assert_eq!(parse_header(&[0x01, 126, 1]).unwrap(), None);
        assert_eq!(parse_header(&[0x01, 126, 1, 0]).unwrap(), Some(Header { fin: false, opcode: 1, header: 4, len: 256 }));
        let long = [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(parse_header(&long).unwrap(), Some(Header { fin: true, opcode: 2, header: 10, len: 65536 }));
        assert_eq!(parse_header(&long[..9]).unwrap(), None);
    }

    #[test]
    fn frames_a_server_must_not_send_are_errors() {
        assert!(parse_header(&[0x81, 0x85]).is_err(), "masked");
        assert!(parse_header(&[0xC1, 5]).is_err(), "reserved bit");
        assert!(parse_header(&[0x09, 5]).is_err(), "fragmented ping");
        assert!(parse_header(&[0x89, 126, 0, 200]).is_err(), "long ping");
        assert!(parse_header(&[0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0]).is_err(), "16 GiB");
    }

    #[test]
    fn our_frames_are_masked_and_unmask_to_the_payload() {
        let mask = [1, 2, 3, 4];
        let f = client_frame(OP_TEXT, b"hello", mask);
        assert_eq!(&f[..6], &[0x81, 0x85, 1, 2, 3, 4]);
        let clear: Vec<u8> = f[6..].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        assert_eq!(clear, b"hello");
        let big = client_frame(OP_TEXT, &[b'x'; 300], mask);
        assert_eq!(&big[..4], &[0x81, 0x80 | 126, 1, 44]);
    }

    #[test]
    fn a_handshake_answer_needs_101_and_the_right_accept_key() {
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(KEY.as_bytes());
        let ok = format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nsec-websocket-accept: {accept}\r\n\r\n");
        assert!(check_response(ok.as_bytes()).is_ok());
        assert!(check_response(b"HTTP/1.1 401 Unauthorized\r\n\r\n").is_err());
        assert!(check_response(b"HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: nope\r\n\r\n").is_err());
    }

    /// A tungstenite server sends what the hub may send: texts (one in fragments, one past the
    /// read size), a ping, a binary, a close. The client must read each whole, in order, answer
    /// the ping, and send a text the server reads.
    #[tokio::test]
    async fn it_reads_what_a_tungstenite_server_sends_and_answers_pings() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let big = "y".repeat(20_000);
        let big_sent = big.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let hello = ws.next().await.unwrap().unwrap();
            ws.send(Message::text("first")).await.unwrap();
            ws.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
            ws.send(Message::text(big_sent)).await.unwrap();
            // "fragment" in two frames: a text frame without FIN, then its continuation.
            ws.send(Message::Frame(WsFrame::message(b"fra".to_vec(), OpCode::Data(Data::Text), false))).await.unwrap();
            ws.send(Message::Frame(WsFrame::message(b"gment".to_vec(), OpCode::Data(Data::Continue), true))).await.unwrap();
            ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
            let pong = ws.next().await.unwrap().unwrap();
            ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Library(4008), reason: "too slow".into() }))).await.unwrap();
            (hello, pong)
        });
        let mut c = LeanWs::connect(&format!("ws://{addr}/ws?token=t"), 1024).await.unwrap();
        c.send_text("hello").await.unwrap();
        assert_eq!(c.next().await.unwrap(), Frame::Text(b"first"));
        assert_eq!(c.next().await.unwrap(), Frame::Text(big.as_bytes()));
        assert_eq!(c.next().await.unwrap(), Frame::Text(b"fragment"));
        assert_eq!(c.next().await.unwrap(), Frame::Binary);
        assert_eq!(c.next().await.unwrap(), Frame::Close(4008, "too slow".into()));
        let (hello, pong) = server.await.unwrap();
        assert_eq!(hello, Message::text("hello"));
        assert_eq!(pong, Message::Pong(b"are you there".to_vec().into()));
    }
}
