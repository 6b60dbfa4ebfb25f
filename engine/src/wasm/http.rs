//! Outbound HTTP for plugins (`wasi:http/outgoing-handler`), through a gate: only granted
//! origins, the grant's timeout, a response-size cap; and, for simulations, an in-process
//! handler in place of the network.
//!
//! A refused request, a response over the cap and a request that timed out are recorded as
//! the call's [`Incident`]: the guest gets the WASI error code, and the call then fails with
//! the incident's message (naming the plugin and the origin), whatever the guest makes of
//! the error code, so every language reports the same root cause.
//!
//! A granted request to the network goes out on one of the plugin's keep-alive connections
//! (`conn.rs`, [`HttpPool`]), after the grant check and with the same caps as a new one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::conn::{send_unpooled, HttpPool};
use super::grant::Granted;

/// A host-side failure of a call's outbound I/O: the call fails with its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Incident {
    /// A request to an origin the grant does not list.
    Denied { origin: String, granted: String },
    /// A response body larger than the cap.
    TooLarge { origin: String, max: usize },
    /// No answer within the request timeout.
    Timeout { origin: String, ms: u128 },
    /// `config.secret` for a secret the grant does not hold.
    SecretNotGranted { name: String },
}

impl Incident {
    /// The message, for a plugin named `plugin`.
    pub(crate) fn message(&self, plugin: &str) -> String {
        match self {
            Incident::Denied { origin, granted } => format!(
                "outbound HTTP to {origin} is not granted to plugin {plugin} (granted origins: {granted})"
            ),
            Incident::TooLarge { origin, max } => format!(
                "the response from {origin} exceeds the response size cap of {max} bytes"
            ),
            Incident::Timeout { origin, ms } => {
                format!("no answer from {origin} within the request timeout of {ms} ms")
            }
            Incident::SecretNotGranted { name } => {
                format!("secret {name:?} is not granted to plugin {plugin}")
            }
        }
    }
}

/// The first incident of the current call, shared with the request futures and bodies that
/// outlive the hook call.
pub(crate) type IncidentSlot = Arc<Mutex<Option<Incident>>>;

pub(crate) fn record(slot: &IncidentSlot, incident: Incident) {
    slot.lock().get_or_insert(incident);
}

/// The first transport failure of the current call's outbound requests (a refused
/// connection, a connection closed mid-answer...) as the host saw it, `origin: error`. The
/// guest only gets a WASI error code (`HttpProtocolError` says little), so a call that then
/// fails quotes this as its root cause. Not an incident: a guest may recover (retry).
pub(crate) type TransportSlot = Arc<Mutex<Option<String>>>;

/// One outbound request as an in-process handler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// The plugin that sent it.
    pub plugin: String,
    /// The method, e.g. `PUT`.
    pub method: String,
    /// The origin, `scheme://host:port`.
    pub origin: String,
    /// The path and query, e.g. `/v1/networks/net-a`.
    pub path: String,
    /// The body.
    pub body: Vec<u8>,
}

/// What an in-process handler answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpReply {
    /// A response.
    Response {
        /// The status code.
        status: u16,
        /// Headers, in order.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// No answer: the request times out (the guest gets a timeout error code and the call
    /// fails naming the origin).
    Timeout,
    /// The connection is refused.
    Refused,
}

impl HttpReply {
    /// A response with a JSON body.
    pub fn json(status: u16, body: impl Into<String>) -> HttpReply {
        HttpReply::Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into().into_bytes(),
        }
    }
}

/// Answers plugins' outbound HTTP in-process, in place of the network, for deterministic
/// simulations (`HostConfig::http_handler`). Grants still apply: a request to an origin the
/// plugin was not granted never reaches the handler.
///
/// For byte-identical runs the answer must depend only on the request and on earlier
/// requests for the same object (calls for different objects may run in any order).
pub trait HttpHandler: Send + Sync {
    /// Answers one request.
    fn handle(&self, request: &HttpRequest) -> HttpReply;
}

/// The `wasi:http` hooks of one instance: the grant check, the caps, the routing.
pub(crate) struct Gate {
    pub(crate) plugin: Arc<str>,
    pub(crate) granted: Arc<Granted>,
    pub(crate) incident: IncidentSlot,
    pub(crate) transport: TransportSlot,
    pub(crate) handler: Option<Arc<dyn HttpHandler>>,
    /// The plugin's keep-alive connections; `None`: a new connection per request.
    pub(crate) pool: Option<HttpPool>,
}

type Sent = Result<super::conn::Sent, Error>;

impl WasiHttpHooks for Gate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        drop(fut);
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let origin = format!("{scheme}://{host}:{port}");
        let host_bare = host.trim_start_matches('[').trim_end_matches(']');
        if !self.granted.allows(&scheme, host_bare, port) {
            record(
                &self.incident,
                Incident::Denied {
                    origin,
                    granted: self.granted.describe_origins(),
                },
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let timeout = self.granted.request_timeout;
        let shorter = |t: Option<std::time::Duration>| Some(t.map_or(timeout, |t| t.min(timeout)));
        let options = RequestOptions {
            connect_timeout: shorter(options.and_then(|o| o.connect_timeout)),
            first_byte_timeout: shorter(options.and_then(|o| o.first_byte_timeout)),
            between_bytes_timeout: shorter(options.and_then(|o| o.between_bytes_timeout)),
        };
        let cap = Cap {
            origin,
            max: self.granted.response_bytes_max,
            incident: self.incident.clone(),
            transport: self.transport.clone(),
            ms: timeout.as_millis(),
        };
        match &self.handler {
            Some(handler) => {
                let handler = handler.clone();
                let plugin = self.plugin.to_string();
                Box::new(async move { cap.simulate(handler, plugin, request).await })
            }
            None => {
                let pool = self.pool.clone();
                Box::new(async move {
                    let sent = match &pool {
                        Some(pool) => pool.send_request(request, Some(options)).await,
                        None => send_unpooled(request, Some(options)).await,
                    };
                    match sent {
                        Ok((response, io)) => Ok((cap.wrap(response)?, io)),
                        Err(failure) => {
                            if let Some(note) = failure.note {
                                cap.note(note);
                            }
                            Err(cap.failed(failure.error))
                        }
                    }
                })
            }
        }
    }
}

/// The per-request limits and where to record an incident.
struct Cap {
    origin: String,
    max: usize,
    ms: u128,
    incident: IncidentSlot,
    transport: TransportSlot,
}

impl Cap {
    /// Records a timeout as an incident, any other failure as the call's transport error;
    /// passes every error on.
    fn failed(&self, error: Error) -> Error {
        if matches!(
            error,
            Error::ConnectionTimeout | Error::ConnectionReadTimeout | Error::HttpResponseTimeout
        ) {
            self.timeout();
        } else {
            self.transport
                .lock()
                .get_or_insert_with(|| format!("{}: {error}", self.origin));
        }
        error
    }

    /// Records the host's explanation of a transport failure (first one wins).
    fn note(&self, note: String) {
        self.transport
            .lock()
            .get_or_insert_with(|| format!("{}: {note}", self.origin));
    }

    fn timeout(&self) {
        record(
            &self.incident,
            Incident::Timeout {
                origin: self.origin.clone(),
                ms: self.ms,
            },
        );
    }

    fn too_large(&self) -> Error {
        record(
            &self.incident,
            Incident::TooLarge {
                origin: self.origin.clone(),
                max: self.max,
            },
        );
        Error::HttpResponseBodySize(None)
    }

    /// Checks the announced length and wraps the body in a counting one.
    fn wrap(self, response: http::Response<WasiBody>) -> Result<http::Response<WasiBody>, Error> {
        let announced = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > self.max as u64) {
            return Err(self.too_large());
        }
        Ok(response.map(|body| {
            Capped {
                inner: body,
                seen: 0,
                cap: self,
            }
            .boxed_unsync()
        }))
    }

    /// Answers from an in-process handler.
    async fn simulate(
        self,
        handler: Arc<dyn HttpHandler>,
        plugin: String,
        request: http::Request<WasiBody>,
    ) -> Sent {
        let (parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes().to_vec();
        let request = HttpRequest {
            plugin,
            method: parts.method.to_string(),
            origin: self.origin.clone(),
            path: parts
                .uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.to_string()),
            body,
        };
        match handler.handle(&request) {
            HttpReply::Response {
                status,
                headers,
                body,
            } => {
                let mut response = http::Response::new(
                    Full::new(Bytes::from(body))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                );
                *response.status_mut() =
                    http::StatusCode::from_u16(status).map_err(|_| Error::HttpProtocolError)?;
                for (name, value) in headers {
                    let name = http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| Error::HttpProtocolError)?;
                    let value = http::HeaderValue::from_str(&value)
                        .map_err(|_| Error::HttpProtocolError)?;
                    response.headers_mut().append(name, value);
                }
                let response = self.wrap(response)?;
                Ok((response, Box::new(async { Ok(()) })))
            }
            HttpReply::Timeout => {
                self.timeout();
                Err(Error::HttpResponseTimeout)
            }
            HttpReply::Refused => Err(self.failed(Error::ConnectionRefused)),
        }
    }
}

/// A response body that fails once more than the cap has arrived.
struct Capped {
    inner: WasiBody,
    seen: usize,
    cap: Cap,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len());
                    if this.seen > this.cap.max {
                        return Poll::Ready(Some(Err(this.cap.too_large())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(this.cap.failed(e)))),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
