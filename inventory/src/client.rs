//! A tiny blocking HTTP/1.1 client for tests and tools (one connection per request).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An answer: the status and the body as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The body.
    pub body: String,
}

impl Reply {
    /// The body parsed as JSON (`null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Talks to an inventory service at one address.
#[derive(Clone, Debug)]
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
    token: Option<String>,
}

impl Client {
    /// A client of the service at `addr`, with a 5 s timeout per request.
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            timeout: Duration::from_secs(5),
            token: None,
        }
    }

    /// Sets the per-request timeout (connect, write, read).
    pub fn timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// `GET /v1/<collection>/<key>`.
    ///
    /// # Errors
    /// An I/O error or timeout; a malformed answer is `InvalidData`.
    pub fn get(&self, collection: &str, key: &str) -> std::io::Result<Reply> {
        self.request("GET", &format!("/v1/{collection}/{key}"), None)
    }

    /// `PUT /v1/<collection>/<key>` with a JSON object body.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn put(&self, collection: &str, key: &str, json: &str) -> std::io::Result<Reply> {
        self.request("PUT", &format!("/v1/{collection}/{key}"), Some(json))
    }

    /// `DELETE /v1/<collection>/<key>`.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn delete(&self, collection: &str, key: &str) -> std::io::Result<Reply> {
        self.request("DELETE", &format!("/v1/{collection}/{key}"), None)
    }

    /// Any request; `body` is sent as JSON.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let body = body.unwrap_or("");
        let auth = match &self.token {
            Some(token) => format!("authorization: Bearer {token}\r\n"),
            None => String::new(),
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse(&raw)
    }
}

fn parse(raw: &[u8]) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers not UTF-8"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let body = String::from_utf8_lossy(&raw[split + 4..]).into_owned();
    Ok(Reply { status, body })
}
