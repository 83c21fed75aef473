//! SPDY/3.1 framing, as far as Kubernetes streaming needs it: kubectl's port-forward
//! speaks SPDY (tunnelled in WebSocket messages), and the runtime's streaming server
//! takes exec with a closable stdin only over SPDY. No maintained crate implements SPDY
//! any more, so the codec lives here.
//!
//! Header blocks are compressed with zlib and the SPDY/3 dictionary, one compression
//! context per direction that lives as long as the session, flushed after each block
//! (draft 3, §2.6.10). Flow control (WINDOW_UPDATE) is read and ignored: Go's spdystream,
//! which kubectl uses, neither sends nor honours windows.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

pub const FLAG_FIN: u8 = 0x01;
const VERSION: u16 = 3;
/// Frames larger than this end the session: port-forward never needs them (Go's
/// io.Copy writes 32 KiB at most).
const MAX_FRAME: usize = 1 << 20;
/// A header block that inflates beyond this is refused (a zlib bomb).
const MAX_HEADERS: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpdyError {
    #[error("SPDY version {0} is not supported (only 3)")]
    Version(u16),
    #[error("SPDY frame too large ({0} bytes)")]
    TooLarge(usize),
    #[error("malformed SPDY {0} frame")]
    Malformed(&'static str),
    #[error("SPDY header block: {0}")]
    Headers(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    SynStream {
        id: u32,
        flags: u8,
        headers: Vec<(String, String)>,
    },
    SynReply {
        id: u32,
        flags: u8,
        headers: Vec<(String, String)>,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Ping(u32),
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        id: u32,
        flags: u8,
        headers: Vec<(String, String)>,
    },
    Data {
        id: u32,
        flags: u8,
        data: Bytes,
    },
    /// SETTINGS, WINDOW_UPDATE and types this side has no use for.
    Ignored(u16),
}

/// Reads the peer's frames: owns the decompression context of that direction.
pub struct Decoder {
    inflate: Decompress,
}

/// Writes this side's frames: owns the compression context of that direction.
pub struct Encoder {
    deflate: Compress,
    primed: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            inflate: Decompress::new(true),
        }
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            deflate: Compress::new(Compression::default(), true),
            primed: false,
        }
    }
}

impl Decoder {
    /// Takes one whole frame off the front of `buf`; None until one has fully arrived.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if len > MAX_FRAME {
            return Err(SpdyError::TooLarge(len));
        }
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let head = buf.split_to(8);
        let mut body = buf.split_to(len).freeze();
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            return Ok(Some(Frame::Data {
                id,
                flags,
                data: body,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let need = |body: &Bytes, n: usize, what: &'static str| {
            if body.len() < n {
                Err(SpdyError::Malformed(what))
            } else {
                Ok(())
            }
        };
        Ok(Some(match kind {
            1 => {
                need(&body, 10, "SYN_STREAM")?;
                let id = body.get_u32() & 0x7fff_ffff;
                body.advance(6); // associated stream, priority, slot
                Frame::SynStream {
                    id,
                    flags,
                    headers: self.inflate_headers(&body)?,
                }
            }
            2 => {
                need(&body, 4, "SYN_REPLY")?;
                let id = body.get_u32() & 0x7fff_ffff;
                Frame::SynReply {
                    id,
                    flags,
                    headers: self.inflate_headers(&body)?,
                }
            }
            3 => {
                need(&body, 8, "RST_STREAM")?;
                Frame::RstStream {
                    id: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            6 => {
                need(&body, 4, "PING")?;
                Frame::Ping(body.get_u32())
            }
            7 => {
                need(&body, 8, "GOAWAY")?;
                Frame::GoAway {
                    last_good: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            8 => {
                need(&body, 4, "HEADERS")?;
                let id = body.get_u32() & 0x7fff_ffff;
                Frame::Headers {
                    id,
                    flags,
                    headers: self.inflate_headers(&body)?,
                }
            }
            other => Frame::Ignored(other),
        }))
    }

    fn inflate_headers(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
        let mut plain = Vec::with_capacity(block.len() * 4);
        let mut input = block;
        let bad = |e: String| SpdyError::Headers(e);
        loop {
            if plain.len() == plain.capacity() {
                plain.reserve(plain.capacity().max(256));
            }
            let before_in = self.inflate.total_in();
            let before_out = plain.len();
            let result = self
                .inflate
                .decompress_vec(input, &mut plain, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before_in) as usize;
            input = &input[used..];
            match result {
                Ok(Status::Ok | Status::BufError) => {
                    if used == 0 && plain.len() == before_out && !input.is_empty() {
                        return Err(bad("stalled on corrupt input".into()));
                    }
                }
                Ok(Status::StreamEnd) => break,
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| bad(e.to_string()))?;
                }
                Err(e) => return Err(bad(e.to_string())),
            }
            if plain.len() > MAX_HEADERS {
                return Err(bad(format!("inflates beyond {MAX_HEADERS} bytes")));
            }
            // Done when all input is consumed and the inflater has no more to give.
            if input.is_empty() && plain.len() < plain.capacity() {
                break;
            }
        }
        parse_block(&plain)
    }
}

impl Encoder {
    /// Appends `frame`, encoded, to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        match frame {
            Frame::Data { id, flags, data } => {
                if data.len() > MAX_FRAME {
                    return Err(SpdyError::TooLarge(data.len()));
                }
                out.put_u32(id & 0x7fff_ffff);
                out.put_u32((u32::from(*flags) << 24) | data.len() as u32);
                out.put_slice(data);
            }
            Frame::SynStream { id, flags, headers } => {
                let block = self.deflate_headers(headers)?;
                let mut body = BytesMut::with_capacity(10 + block.len());
                body.put_u32(id & 0x7fff_ffff);
                body.put_u32(0);
                body.put_u16(0);
                body.put_slice(&block);
                control(out, 1, *flags, &body);
            }
            Frame::SynReply { id, flags, headers } => {
                let block = self.deflate_headers(headers)?;
                let mut body = BytesMut::with_capacity(4 + block.len());
                body.put_u32(id & 0x7fff_ffff);
                body.put_slice(&block);
                control(out, 2, *flags, &body);
            }
            Frame::Headers { id, flags, headers } => {
                let block = self.deflate_headers(headers)?;
                let mut body = BytesMut::with_capacity(4 + block.len());
                body.put_u32(id & 0x7fff_ffff);
                body.put_slice(&block);
                control(out, 8, *flags, &body);
            }
            Frame::RstStream { id, status } => {
                let mut body = [0u8; 8];
                body[..4].copy_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
                body[4..].copy_from_slice(&status.to_be_bytes());
                control(out, 3, 0, &body);
            }
            Frame::Ping(id) => control(out, 6, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                let mut body = [0u8; 8];
                body[..4].copy_from_slice(&(last_good & 0x7fff_ffff).to_be_bytes());
                body[4..].copy_from_slice(&status.to_be_bytes());
                control(out, 7, 0, &body);
            }
            Frame::Ignored(_) => {}
        }
        Ok(())
    }

    fn deflate_headers(&mut self, headers: &[(String, String)]) -> Result<Vec<u8>, SpdyError> {
        if !self.primed {
            self.deflate
                .set_dictionary(&DICTIONARY)
                .map_err(|e| SpdyError::Headers(e.to_string()))?;
            self.primed = true;
        }
        let mut plain = Vec::new();
        plain.put_u32(headers.len() as u32);
        for (k, v) in headers {
            plain.put_u32(k.len() as u32);
            plain.put_slice(k.as_bytes());
            plain.put_u32(v.len() as u32);
            plain.put_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input = &plain[..];
        loop {
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            let before_in = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Headers(e.to_string()))?;
            input = &input[(self.deflate.total_in() - before_in) as usize..];
            // A sync flush is complete once it leaves spare room in the output.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        Ok(out)
    }
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, body: &[u8]) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32((u32::from(flags) << 24) | body.len() as u32);
    out.put_slice(body);
}

/// Name/value pairs; a value holding NULs is several values of one name (kept joined).
fn parse_block(mut b: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
    let bad = || SpdyError::Malformed("header block");
    let take = |b: &mut &[u8]| -> Result<String, SpdyError> {
        if b.len() < 4 {
            return Err(bad());
        }
        let n = b.get_u32() as usize;
        if b.len() < n {
            return Err(bad());
        }
        let s = String::from_utf8_lossy(&b[..n]).into_owned();
        b.advance(n);
        Ok(s)
    };
    if b.len() < 4 {
        return Err(bad());
    }
    let count = b.get_u32() as usize;
    let mut out = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let k = take(&mut b)?;
        let v = take(&mut b)?;
        out.push((k.to_ascii_lowercase(), v));
    }
    Ok(out)
}

/// The SPDY/3 header compression dictionary (draft 3, §2.6.10.1): these words, each
/// preceded by its length as a 32-bit big-endian number, then `TAIL` as it is.
const WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
const DICTIONARY_LEN: usize = 1423;

static DICTIONARY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let mut d = Vec::with_capacity(DICTIONARY_LEN);
    for w in WORDS {
        d.put_u32(w.len() as u32);
        d.put_slice(w.as_bytes());
    }
    d.put_slice(TAIL.as_bytes());
    d
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_specs() {
        assert_eq!(DICTIONARY.len(), DICTIONARY_LEN);
        // Every SPDY/3 header block starts with a zlib header naming this Adler-32.
        let mut a: u32 = 1;
        let mut b: u32 = 0;
        for &x in DICTIONARY.iter() {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn frames_round_trip_with_one_compression_context_per_direction() {
        let mut client = Encoder::default();
        let mut server = Decoder::default();
        let frames = vec![
            Frame::SynStream {
                id: 1,
                flags: 0,
                headers: pairs(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::Data {
                id: 1,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
            Frame::SynStream {
                id: 3,
                flags: 0,
                headers: pairs(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::Data {
                id: 3,
                flags: 0,
                data: Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
            },
            Frame::Ping(1),
            Frame::RstStream { id: 3, status: 5 },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
        ];
        let mut wire = BytesMut::new();
        for f in &frames {
            client.encode(f, &mut wire).unwrap();
        }
        // Arbitrary splits, as kubectl's WebSocket messages cut frames anywhere.
        let mut got = Vec::new();
        let mut buf = BytesMut::new();
        for chunk in wire.chunks(7) {
            buf.extend_from_slice(chunk);
            while let Some(f) = server.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn first_header_block_names_the_dictionary() {
        let mut c = Encoder::default();
        let mut wire = BytesMut::new();
        c.encode(
            &Frame::SynReply {
                id: 1,
                flags: 0,
                headers: Vec::new(),
            },
            &mut wire,
        )
        .unwrap();
        // 8-byte frame header, 4-byte stream id, then zlib: CMF, FLG with FDICT, DICTID.
        let z = &wire[12..];
        assert_eq!(z[0] & 0x0f, 8, "deflate");
        assert_ne!(z[1] & 0x20, 0, "FDICT set");
        assert_eq!(&z[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut c = Decoder::default();
        // Wrong version.
        let mut b = BytesMut::from(&[0x80, 0x02, 0x00, 0x01, 0, 0, 0, 0][..]);
        assert_eq!(c.decode(&mut b), Err(SpdyError::Version(2)));
        // SYN_STREAM too short for its fixed fields.
        let mut b = BytesMut::from(&[0x80, 0x03, 0x00, 0x01, 0, 0, 0, 2, 0, 0][..]);
        assert_eq!(c.decode(&mut b), Err(SpdyError::Malformed("SYN_STREAM")));
        // A header block that is not zlib.
        let mut c = Decoder::default();
        let mut b = BytesMut::from(
            &[
                0x80, 0x03, 0x00, 0x02, 0, 0, 0, 8, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef,
            ][..],
        );
        assert!(matches!(c.decode(&mut b), Err(SpdyError::Headers(_))));
        // Too large.
        let mut b = BytesMut::from(&[0, 0, 0, 1, 0, 0x10, 0, 0][..]);
        assert!(c.decode(&mut b).unwrap().is_none());
        let mut b = BytesMut::from(&[0, 0, 0, 1, 0, 0x10, 0, 1][..]);
        assert_eq!(c.decode(&mut b), Err(SpdyError::TooLarge((1 << 20) + 1)));
    }
}
