//! Just enough HTTP/1.1 for a forwarding proxy: read a message head, tell how its body is framed, copy or collect
//! the body. The head is relayed byte for byte (the SDK's signature covers some headers); only the framing headers
//! are interpreted.

use std::io;

#[cfg(test)]
use tokio::io::AsyncRead;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest head accepted (request line or status line plus headers).
const MAX_HEAD: usize = 64 * 1024;

/// How a message body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n` (also 0 for a request without a body).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response with neither: the body runs until the server closes the connection.
    UntilClose,
}

/// A message head as read, with what the proxy needs from it.
#[derive(Debug)]
pub struct Head {
    /// The head's bytes, including the blank line that ends it.
    pub raw: Vec<u8>,
    /// How the body is framed.
    pub framing: Framing,
    /// Whether the connection stays open after this message.
    pub keep_alive: bool,
}

/// Reads a head; `Ok(None)` when the peer closed the connection before sending anything.
pub async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R, is_request: bool) -> io::Result<Option<Head>> {
    let mut raw = Vec::with_capacity(1024);
    loop {
        let before = raw.len();
        let n = reader.read_until(b'\n', &mut raw).await?;
        if n == 0 {
            return if raw.is_empty() { Ok(None) } else { Err(eof("inside a message head")) };
        }
        if raw.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "message head too large"));
        }
        let line = &raw[before..];
        if (line == b"\r\n" || line == b"\n") && before > 0 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let http10 = first.contains("HTTP/1.0");
    let (mut length, mut chunked, mut close, mut keep) = (None, false, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => {
                length = Some(value.parse::<u64>().map_err(|_| invalid("bad Content-Length"))?);
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => {
                close = value.eq_ignore_ascii_case("close");
                keep = value.eq_ignore_ascii_case("keep-alive");
            }
            _ => {}
        }
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) if is_request => Framing::Length(0),
        (false, None) => Framing::UntilClose,
    };
    let keep_alive = !close && (!http10 || keep) && framing != Framing::UntilClose;
    Ok(Some(Head { raw, framing, keep_alive }))
}

/// Copies a body from `reader` to `writer` as it arrives (streaming responses stay streaming).
pub async fn copy_body<R, W>(framing: Framing, reader: &mut R, writer: &mut W) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::Length(n) => {
            let copied = tokio::io::copy(&mut (&mut *reader).take(n), writer).await?;
            if copied < n {
                return Err(eof("inside a body"));
            }
        }
        Framing::UntilClose => {
            tokio::io::copy(reader, writer).await?;
        }
        Framing::Chunked => loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line).await? == 0 {
                return Err(eof("inside a chunked body"));
            }
            writer.write_all(&line).await?;
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.trim().split(';').next().unwrap_or_default();
            let size = u64::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers, then the blank line that ends the body.
                loop {
                    let mut trailer = Vec::new();
                    if reader.read_until(b'\n', &mut trailer).await? == 0 {
                        return Err(eof("inside chunked trailers"));
                    }
                    writer.write_all(&trailer).await?;
                    if trailer == b"\r\n" || trailer == b"\n" {
                        break;
                    }
                }
                break;
            }
            // The chunk's data and its CRLF.
            let copied = tokio::io::copy(&mut (&mut *reader).take(size + 2), writer).await?;
            if copied < size + 2 {
                return Err(eof("inside a chunk"));
            }
            writer.flush().await?;
        },
    }
    writer.flush().await
}

/// Reads a whole body into memory, in its wire form (chunk framing included).
pub async fn read_body<R: AsyncBufRead + Unpin>(framing: Framing, reader: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    copy_body(framing, reader, &mut body).await?;
    Ok(body)
}

/// The data of a chunked body in its wire form (as [`read_body`] returns it), without the chunk framing.
pub fn dechunk(wire: &[u8]) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut rest = wire;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(|| invalid("chunk size line"))?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(data);
        }
        let chunk = rest.get(..size).ok_or_else(|| eof("inside a chunk"))?;
        data.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or_else(|| eof("after a chunk"))?;
    }
}

/// `head` (a response head as read) framed for a body of `length` bytes: `Content-Length` instead of whatever
/// framing headers it had.
pub fn with_length(head: &[u8], length: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(head.len() + 24);
    for line in text.split("\r\n").filter(|line| !line.is_empty()) {
        let name = line.split_once(':').map(|(name, _)| name.trim().to_ascii_lowercase()).unwrap_or_default();
        if name != "content-length" && name != "transfer-encoding" {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("Content-Length: {length}\r\n\r\n"));
    out.into_bytes()
}

/// Writes `bytes` and flushes.
pub async fn write_all<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

fn eof(where_: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("connection closed {where_}"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_to_end<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).await?;
        Ok(bytes)
    }

    #[tokio::test]
    async fn reads_heads_and_frames_bodies() {
        let wire = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nX-Amz-Target: Kinesis_20131202.GetRecords\r\n\r\nabcNEXT";
        let mut reader = tokio::io::BufReader::new(&wire[..]);
        let head = read_head(&mut reader, true).await.unwrap().unwrap();
        assert_eq!(head.framing, Framing::Length(3));
        assert!(head.keep_alive);
        assert_eq!(read_body(head.framing, &mut reader).await.unwrap(), b"abc");
        assert_eq!(read_to_end(&mut reader).await.unwrap(), b"NEXT");

        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nrest";
        let mut reader = tokio::io::BufReader::new(&wire[..]);
        let head = read_head(&mut reader, false).await.unwrap().unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert_eq!(read_body(head.framing, &mut reader).await.unwrap(), b"3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(read_to_end(&mut reader).await.unwrap(), b"rest");

        let wire = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it";
        let mut reader = tokio::io::BufReader::new(&wire[..]);
        let head = read_head(&mut reader, false).await.unwrap().unwrap();
        assert_eq!(head.framing, Framing::UntilClose);
        assert!(!head.keep_alive);

        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert!(dechunk(b"5\r\nab").is_err());
        let head = with_length(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n", 7);
        assert_eq!(head, b"HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 7\r\n\r\n");

        let mut reader = tokio::io::BufReader::new(&b""[..]);
        assert!(read_head(&mut reader, true).await.unwrap().is_none());
        let mut reader = tokio::io::BufReader::new(&b"POST / HTTP/1.1\r\nHost"[..]);
        assert!(read_head(&mut reader, true).await.is_err());
    }
}
