//! Outbound HTTP (`wasi:http/outgoing-handler`), as blocking calls.
//!
//! The host refuses every origin the embedder did not grant this plugin; such a request
//! fails, and so does the call, with a message naming the plugin and the origin. Redirects
//! (301, 302, 303, 307, 308) are followed up to [`REDIRECTS_MAX`] times, each hop a new
//! request the host checks the same way, so a redirect to an origin not granted fails too.
//!
//! ```no_run
//! use syncore_plugin_sdk::http;
//! let reply = http::put("http://127.0.0.1:8080/v1/networks/net-a", br#"{"name": "a"}"#)?;
//! if reply.status >= 300 {
//!     return Err(http::Error::status("PUT", "http://127.0.0.1:8080/v1/networks/net-a", &reply));
//! }
//! # Ok::<(), http::Error>(())
//! ```

/// Most redirects followed for one request.
pub const REDIRECTS_MAX: usize = 5;

/// A response: the status and the whole body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Response headers (names lowercase), in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request failed: the method, the URL and the cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    /// An unexpected status, with the start of the body: "PUT url: 500 (body)".
    pub fn status(method: &str, url: &str, response: &Response) -> Error {
        let mut body = response.text();
        if body.len() > 200 {
            let mut end = 200;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
        }
        Error(format!(
            "{method} {url}: status {} ({})",
            response.status,
            body.trim()
        ))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// `GET url`.
///
/// # Errors
/// A bad URL, a refused origin, a transport error or a timeout.
pub fn get(url: &str) -> Result<Response, Error> {
    request("GET", url, &[], None)
}

/// `PUT url` with a JSON body.
///
/// # Errors
/// As [`get`].
pub fn put(url: &str, json: &[u8]) -> Result<Response, Error> {
    request(
        "PUT",
        url,
        &[("content-type", "application/json")],
        Some(json),
    )
}

/// `DELETE url`.
///
/// # Errors
/// As [`get`].
pub fn delete(url: &str) -> Result<Response, Error> {
    request("DELETE", url, &[], None)
}

/// Any request, following redirects (a 303 turns into a GET without a body).
///
/// # Errors
/// As [`get`]; more than [`REDIRECTS_MAX`] redirects.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, Error> {
    let (mut method, mut url, mut body) = (method.to_string(), url.to_string(), body);
    for _ in 0..=REDIRECTS_MAX {
        let response = send(&method, &url, headers, body)?;
        let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
        let Some(location) = response.header("location").filter(|_| redirect) else {
            return Ok(response);
        };
        let next = resolve(&url, location);
        if response.status == 303 {
            method = "GET".to_string();
            body = None;
        }
        url = next;
    }
    Err(Error(format!(
        "{method} {url}: more than {REDIRECTS_MAX} redirects"
    )))
}

/// `location` relative to `base` (absolute URLs and absolute paths).
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    match split(base) {
        Ok((scheme, authority, _)) if location.starts_with('/') => {
            format!("{scheme}://{authority}{location}")
        }
        _ => location.to_string(),
    }
}

/// `scheme://authority/path?query` into its parts (the path defaults to `/`).
fn split(url: &str) -> Result<(&str, &str, &str), Error> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error(format!("bad URL {url:?}: expected scheme://host/path")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(Error(format!("bad URL {url:?}: no host")));
    }
    Ok((scheme, authority, path))
}

#[cfg(target_arch = "wasm32")]
fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, Error> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
    };
    use wasip2::io::streams::StreamError;

    let fail = |what: String| Error(format!("{method} {url}: {what}"));
    let (scheme, authority, path) = split(url)?;
    let fields = Fields::new();
    // Every request but a bodiless GET or HEAD says its length (0 without a body), so the
    // request is complete on the wire once its bytes are sent: a body of unknown length goes
    // chunked, and a server that answers before reading it (a DELETE, an early error) may
    // close the connection while the terminating chunk is still on its way, which the guest
    // would see as a protocol error for a request the server did carry out.
    let length = match (body, method) {
        (None, "GET" | "HEAD") => None,
        (body, _) => Some(body.map_or(0, <[u8]>::len).to_string()),
    };
    let all = headers
        .iter()
        .map(|(n, v)| (*n, *v))
        .chain(length.as_deref().map(|l| ("content-length", l)));
    for (name, value) in all {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| fail(format!("header {name}: {e:?}")))?;
    }
    let request = OutgoingRequest::new(fields);
    let method_value = match method {
        "GET" => Method::Get,
        "PUT" => Method::Put,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    };
    let scheme_value = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let bad = |what: &str| fail(format!("the host refused the {what}"));
    request
        .set_method(&method_value)
        .map_err(|_| bad("method"))?;
    request
        .set_scheme(Some(&scheme_value))
        .map_err(|_| bad("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|_| bad("authority"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|_| bad("path"))?;
    let outgoing = request.body().map_err(|_| bad("body"))?;
    let body = body.unwrap_or_default();
    let stream = outgoing.write().map_err(|_| bad("body stream"))?;
    // A body the host takes at once is written before the request goes out, so the head
    // and the body leave in one write (one wake-up of the server, not two); a larger one
    // is streamed once the request is out (the host reads it as it sends).
    let whole = !body.is_empty()
        && stream
            .check_write()
            .is_ok_and(|n| n >= body.len() as u64)
        && stream.write(&body).is_ok();
    let future = if whole || body.is_empty() {
        drop(stream);
        OutgoingBody::finish(outgoing, None).map_err(|e| fail(format!("{e:?}")))?;
        outgoing_handler::handle(request, None).map_err(|e| fail(format!("{e:?}")))?
    } else {
        let future =
            outgoing_handler::handle(request, None).map_err(|e| fail(format!("{e:?}")))?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| fail(format!("writing the body: {e:?}")))?;
        }
        drop(stream);
        OutgoingBody::finish(outgoing, None).map_err(|e| fail(format!("{e:?}")))?;
        future
    };
    let incoming = loop {
        match future.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => return Err(fail(format!("{code:?}"))),
            Some(Err(())) => return Err(fail("the response was taken twice".into())),
            None => future.subscribe().block(),
        }
    };
    let status = incoming.status();
    let headers = incoming
        .headers()
        .entries()
        .into_iter()
        .map(|(n, v)| {
            (
                n.to_ascii_lowercase(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    let body_resource = incoming.consume().map_err(|_| bad("response body"))?;
    let mut body = Vec::new();
    {
        let stream = body_resource
            .stream()
            .map_err(|_| bad("response body stream"))?;
        loop {
            match stream.blocking_read(64 << 10) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(fail(format!("reading the body: {}", e.to_debug_string())))
                }
            }
        }
    }
    let _ = IncomingBody::finish(body_resource);
    Ok(Response {
        status,
        headers,
        body,
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn send(
    method: &str,
    url: &str,
    _headers: &[(&str, &str)],
    _body: Option<&[u8]>,
) -> Result<Response, Error> {
    split(url)?;
    Err(Error(format!(
        "{method} {url}: outbound HTTP needs the wasm host (this is a native build)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_redirects_resolve() {
        assert_eq!(
            split("http://127.0.0.1:80/v1/x?y=1").unwrap(),
            ("http", "127.0.0.1:80", "/v1/x?y=1")
        );
        assert_eq!(split("http://h").unwrap(), ("http", "h", "/"));
        assert!(split("nowhere").is_err());
        assert_eq!(resolve("http://a:1/x", "/y"), "http://a:1/y");
        assert_eq!(resolve("http://a:1/x", "https://b/z"), "https://b/z");
    }
}
