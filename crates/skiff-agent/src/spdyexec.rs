//! exec and attach with stdin, as the runtime's SPDY streaming form. containerd's
//! WebSocket form (v4 channels) has no way to close stdin, so `kubectl exec -i … cat`
//! would never see EOF; over SPDY (remotecommand v4) stdin is a stream of its own and a
//! FIN closes it. The API server's WebSocket (v5 channels) is translated here: channel 0
//! is stdin's data, 255 its close, 4 resize; stdout, stderr and the error stream come back
//! on channels 1, 2 and 3.

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use skiff_spdy::{Decoder, Encoder, FLAG_FIN, Frame};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Which streams the runtime expects: exactly those of the CRI request.
#[derive(Debug, Clone, Copy)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// An upgraded, ready SPDY session to the runtime: every stream created and replied to.
pub struct Session {
    read: tokio::net::tcp::OwnedReadHalf,
    write: tokio::net::tcp::OwnedWriteHalf,
    decoder: Decoder,
    encoder: Encoder,
    buf: BytesMut,
    /// Stream id → the v5 channel its data belongs to.
    channels: HashMap<u32, u8>,
    stdin: Option<u32>,
    resize: Option<u32>,
}

/// Opens `url` (the runtime's streaming server) as SPDY/3.1 with the remotecommand v4
/// protocol and creates the streams, waiting for the runtime to accept each.
pub async fn connect(url: &str, streams: Streams) -> Result<Session, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("streaming URL {url:?} is not plain HTTP"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut tcp = TcpStream::connect(host)
        .await
        .map_err(|e| format!("runtime stream: {e}"))?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // The response head, byte by byte up to its blank line: what follows is SPDY.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = tcp.read_u8().await.map_err(|e| e.to_string())?;
        head.push(b);
        if head.len() > 16 * 1024 {
            return Err("runtime stream: response head too long".into());
        }
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!(
            "runtime stream refused the upgrade: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    let (read, write) = tcp.into_split();
    let mut s = Session {
        read,
        write,
        decoder: Decoder::default(),
        encoder: Encoder::default(),
        buf: BytesMut::new(),
        channels: HashMap::new(),
        stdin: None,
        resize: None,
    };
    // The error stream first, as client-go does; ids are odd from the client.
    let mut wanted = vec![("error", 3u8)];
    if streams.stdin {
        wanted.push(("stdin", 0));
    }
    if streams.stdout {
        wanted.push(("stdout", 1));
    }
    if streams.stderr && !streams.tty {
        wanted.push(("stderr", 2));
    }
    if streams.tty {
        wanted.push(("resize", 4));
    }
    let mut pending = Vec::new();
    for (i, (kind, channel)) in wanted.into_iter().enumerate() {
        let id = 1 + 2 * i as u32;
        s.send(&Frame::SynStream {
            id,
            flags: 0,
            headers: vec![("streamtype".into(), kind.into())],
        })
        .await?;
        match kind {
            "stdin" => s.stdin = Some(id),
            "resize" => s.resize = Some(id),
            _ => {
                s.channels.insert(id, channel);
            }
        }
        pending.push(id);
    }
    // Data sent before the runtime's reply would be dropped: wait for every reply.
    let replies = async {
        while !pending.is_empty() {
            match s.next().await? {
                Some(Frame::SynReply { id, .. }) => pending.retain(|p| *p != id),
                Some(Frame::Ping(id)) => s.send(&Frame::Ping(id)).await?,
                Some(Frame::RstStream { id, .. }) => {
                    return Err(format!("runtime reset stream {id}"));
                }
                Some(_) => {}
                None => return Err("runtime stream closed during setup".into()),
            }
        }
        Ok::<_, String>(())
    };
    tokio::time::timeout(Duration::from_secs(30), replies)
        .await
        .map_err(|_| "runtime stream: no reply to stream creation".to_string())??;
    Ok(s)
}

impl Session {
    async fn send(&mut self, f: &Frame) -> Result<(), String> {
        let mut out = BytesMut::new();
        self.encoder
            .encode(f, &mut out)
            .map_err(|e| e.to_string())?;
        self.write.write_all(&out).await.map_err(|e| e.to_string())
    }

    async fn next(&mut self) -> Result<Option<Frame>, String> {
        loop {
            if let Some(f) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| e.to_string())?
            {
                return Ok(Some(f));
            }
            let mut chunk = [0u8; 32 * 1024];
            let n = self
                .read
                .read(&mut chunk)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Relays between the API server's v5 WebSocket and this session until the command
    /// ends (the runtime finishes its streams) or the client goes.
    pub async fn relay<S>(self, client: tokio_tungstenite::WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let Session {
            mut read,
            mut write,
            mut decoder,
            mut encoder,
            mut buf,
            channels,
            stdin,
            resize,
        } = self;
        let (mut c_tx, mut c_rx) = client.split();
        let (ftx, mut frx) = mpsc::channel::<Frame>(64);
        let writer = async move {
            let mut out = BytesMut::new();
            while let Some(f) = frx.recv().await {
                if encoder.encode(&f, &mut out).is_err()
                    || write.write_all(&out.split()).await.is_err()
                {
                    break;
                }
            }
        };
        let pings = ftx.clone();
        let up = async move {
            while let Some(Ok(m)) = c_rx.next().await {
                if m.is_close() {
                    break;
                }
                let Some(b) = crate::exec::frame_bytes(&m) else {
                    continue;
                };
                let Some((&channel, data)) = b.split_first() else {
                    continue;
                };
                let frame = match (channel, stdin, resize) {
                    (0, Some(id), _) => Frame::Data {
                        id,
                        flags: 0,
                        data: Bytes::copy_from_slice(data),
                    },
                    // v5's close frame names the channel it closes.
                    (255, Some(id), _) if data.first() == Some(&0) => Frame::Data {
                        id,
                        flags: FLAG_FIN,
                        data: Bytes::new(),
                    },
                    (4, _, Some(id)) => Frame::Data {
                        id,
                        flags: 0,
                        data: Bytes::copy_from_slice(data),
                    },
                    _ => continue,
                };
                if ftx.send(frame).await.is_err() {
                    break;
                }
            }
        };
        let down = async move {
            let mut open: Vec<u32> = channels.keys().copied().collect();
            let mut chunk = vec![0u8; 32 * 1024];
            'read: while !open.is_empty() {
                let frame = loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(f)) => break f,
                        Ok(None) => {}
                        Err(_) => break 'read,
                    }
                    match read.read(&mut chunk).await {
                        Ok(0) | Err(_) => break 'read,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                match frame {
                    Frame::Data { id, flags, data } => {
                        if let Some(&ch) = channels.get(&id)
                            && !data.is_empty()
                        {
                            let mut msg = Vec::with_capacity(data.len() + 1);
                            msg.push(ch);
                            msg.extend_from_slice(&data);
                            if c_tx.send(Message::Binary(msg.into())).await.is_err() {
                                break 'read;
                            }
                        }
                        if flags & FLAG_FIN != 0 {
                            open.retain(|o| *o != id);
                        }
                    }
                    Frame::RstStream { id, .. } => open.retain(|o| *o != id),
                    Frame::Ping(id) => {
                        let _ = pings.send(Frame::Ping(id)).await;
                    }
                    Frame::GoAway { .. } => break,
                    _ => {}
                }
            }
            // A close without a code reads as an error in client-go: 1000 is the end.
            let _ = c_tx
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                })))
                .await;
        };
        // The command's end (the runtime's streams finishing) ends the session; so does
        // the client leaving. Dropping the TCP halves closes the runtime's side.
        tokio::select! {
            _ = down => {}
            _ = up => {}
            _ = writer => {}
        }
    }
}
