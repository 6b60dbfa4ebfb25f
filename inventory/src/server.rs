//! The HTTP server: routes, fault injection, and the thread it runs on.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::alarm::Alarms;
use crate::log::RequestLog;
use crate::store::{Put, Records, COLLECTIONS};

/// Most bytes of a request body the service reads (a PUT's fields).
pub const BODY_BYTES_MAX: usize = 1 << 20;

/// Most entries kept in the request log ([`Inventory::requests`]); older ones are dropped.
pub const REQUEST_LOG_MAX: usize = 100_000;

/// Faults the service injects into requests under `/v1` (never into `/admin` or `/test`).
///
/// Set them at start ([`Inventory::start_with`]), at any time with [`Inventory::set_faults`],
/// or over HTTP with `PUT /admin/faults` and a JSON body of these fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Every request waits this long before it is handled.
    pub latency_ms: u64,
    /// The next this-many requests answer `500 Internal Server Error` without touching the
    /// records (the count goes down with each).
    pub fail_next: u32,
    /// Requests never get an answer (the connection stays open until the client gives up).
    pub hang: bool,
}

/// One request the service received (under `/v1`), as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Logged {
    /// The method, e.g. `PUT`.
    pub method: String,
    /// The path, e.g. `/v1/networks/net-a`.
    pub path: String,
    /// The status answered; 0 while it hangs.
    pub status: u16,
    /// The request's `Authorization` header as received (e.g. `Bearer <token>`), if it
    /// had one (not UTF-8: its bytes, lossily).
    pub authorization: Option<String>,
}

/// The state one server shares with its connections.
struct Shared {
    records: Mutex<Records>,
    faults: Mutex<Faults>,
    log: Mutex<RequestLog>,
    /// TCP connections accepted so far.
    accepted: AtomicU64,
    /// The latency fault's delays (precise to tens of microseconds, not a millisecond).
    alarms: Alarms,
    /// The bearer token `/v1` requires ([`Inventory::require_token`]); `None`: none.
    token: Mutex<Option<String>>,
}

/// A running inventory service, bound to a loopback port; stopped when dropped.
///
/// # Examples
/// ```
/// use syncore_inventory::{Client, Inventory};
/// let inventory = Inventory::start()?;
/// let client = Client::new(inventory.addr());
/// let created = client.put("networks", "net-a", r#"{"name": "a"}"#)?;
/// assert_eq!(created.status, 201);
/// assert_eq!(inventory.records().get("networks", "net-a").unwrap().fields["name"], "a");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Inventory {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Inventory {
    /// Starts a service on `127.0.0.1`, on a free port, with no faults.
    ///
    /// # Errors
    /// When the port cannot be bound or the server thread cannot start.
    pub fn start() -> std::io::Result<Inventory> {
        Inventory::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), Faults::default())
    }

    /// Starts a service on `addr` (port 0: a free one) with `faults`.
    ///
    /// # Errors
    /// When the address cannot be bound or the server thread cannot start.
    pub fn start_with(addr: SocketAddr, faults: Faults) -> std::io::Result<Inventory> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            records: Mutex::default(),
            faults: Mutex::new(faults),
            log: Mutex::new(RequestLog::new(REQUEST_LOG_MAX)),
            accepted: AtomicU64::new(0),
            alarms: Alarms::start(addr.port())?,
            token: Mutex::new(None),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let served = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("syncore-inventory-{}", addr.port()))
            .spawn(move || runtime.block_on(serve(listener, served, stopped)))?;
        Ok(Inventory {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: the origin to grant a plugin.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of every record.
    pub fn records(&self) -> Records {
        self.shared.records.lock().clone()
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults.lock().clone()
    }

    /// Replaces the faults (for requests that arrive from now on).
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock() = faults;
    }

    /// The requests received under `/v1`, oldest first (at most [`REQUEST_LOG_MAX`]).
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().to_vec()
    }

    /// TCP connections accepted so far (a client that keeps its connections alive opens
    /// fewer than it sends requests).
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Requires `Authorization: Bearer <token>` on every request under `/v1` from now on
    /// (`None`: no token, the default). A request without it, or with another token, is
    /// answered `401 Unauthorized` before any fault and without touching the records; it
    /// is logged with what it sent ([`Logged::authorization`]).
    pub fn require_token(&self, token: Option<&str>) {
        *self.shared.token.lock() = token.map(str::to_string);
    }

    /// Blocks until the server thread ends (it ends only when the service is dropped, so
    /// this is for a binary that serves until it is killed).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Inventory {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections until `stopped` fires; each is served on its own task.
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors, for instance: wait a little instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, body: Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    answer(status, json!({ "error": message.into() }))
}

/// Routes one request.
async fn handle(shared: &Shared, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", rest @ ..] => {
            let method = req.method().to_string();
            let authorization = req
                .headers()
                .get(AUTHORIZATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let seq = shared.log.lock().push(Logged {
                method,
                path: path.clone(),
                status: 0,
                authorization: authorization.clone(),
            });
            let required = shared.token.lock().clone();
            let response = match required {
                Some(token)
                    if authorization
                        .as_deref()
                        .and_then(|a| a.strip_prefix("Bearer "))
                        != Some(token.as_str()) =>
                {
                    let mut response = error(
                        StatusCode::UNAUTHORIZED,
                        if authorization.is_some() {
                            "wrong bearer token"
                        } else {
                            "a bearer token is required"
                        },
                    );
                    response.headers_mut().insert(
                        hyper::header::WWW_AUTHENTICATE,
                        hyper::header::HeaderValue::from_static("Bearer"),
                    );
                    response
                }
                _ => v1(shared, req, rest).await,
            };
            shared
                .log
                .lock()
                .set_status(seq, response.status().as_u16());
            response
        }
        ["admin", "health"] => answer(StatusCode::OK, json!({"ok": true})),
        ["admin", "faults"] => match *req.method() {
            Method::GET => answer(StatusCode::OK, json!(*shared.faults.lock())),
            Method::PUT => match read_json::<Faults>(req).await {
                Ok(faults) => {
                    *shared.faults.lock() = faults.clone();
                    answer(StatusCode::OK, json!(faults))
                }
                Err(e) => e,
            },
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "use GET or PUT"),
        },
        ["admin", "records"] => answer(StatusCode::OK, json!(shared.records.lock().all())),
        // Hostile endpoints for the plugin tests: a redirect anywhere, a body of any size.
        ["test", "redirect"] => {
            let to = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("to="))
                .unwrap_or("/");
            let mut response = error(StatusCode::TEMPORARY_REDIRECT, "redirected");
            match hyper::header::HeaderValue::from_str(to) {
                Ok(value) => {
                    response.headers_mut().insert(LOCATION, value);
                    response
                }
                Err(_) => error(StatusCode::BAD_REQUEST, "bad redirect target"),
            }
        }
        ["test", "bytes", n] => match n.parse::<usize>() {
            Ok(n) if n <= 64 << 20 => {
                let mut response = Response::new(Full::new(Bytes::from(vec![b'x'; n])));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/octet-stream"),
                );
                response
            }
            _ => error(StatusCode::BAD_REQUEST, "bytes: at most 64 MiB"),
        },
        _ => error(StatusCode::NOT_FOUND, format!("no route {path}")),
    }
}

/// `/v1/<collection>[/<key>]`, after the faults. The whole request body is read first, so
/// no answer (an injected failure, a DELETE, an error) leaves a client still sending it.
async fn v1(shared: &Shared, req: Request<Incoming>, rest: &[&str]) -> Answer {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, BODY_BYTES_MAX).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        }
    };
    let faults = {
        let mut faults = shared.faults.lock();
        let now = faults.clone();
        faults.fail_next = faults.fail_next.saturating_sub(1);
        now
    };
    if faults.latency_ms > 0 {
        shared
            .alarms
            .sleep(Duration::from_millis(faults.latency_ms))
            .await;
    }
    if faults.hang {
        std::future::pending::<()>().await;
    }
    if faults.fail_next > 0 {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "injected failure");
    }
    let (collection, key) = match rest {
        [c] => (*c, None),
        [c, k] => (*c, Some(*k)),
        _ => return error(StatusCode::NOT_FOUND, "use /v1/<collection>[/<key>]"),
    };
    if !COLLECTIONS.contains(&collection) {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no collection {collection:?} (there are {})",
                COLLECTIONS.join(", ")
            ),
        );
    }
    if let Some(key) = key {
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad key {key:?}: use letters, digits, '-', '_' and '.'"),
            );
        }
    }
    match (parts.method.clone(), key) {
        (Method::GET, None) => {
            let items: Vec<_> = shared
                .records
                .lock()
                .collection(collection)
                .into_values()
                .collect();
            answer(StatusCode::OK, json!({ "items": items }))
        }
        (Method::GET, Some(key)) => match shared.records.lock().get(collection, key) {
            Some(record) => answer(StatusCode::OK, json!(record)),
            None => error(StatusCode::NOT_FOUND, format!("no {collection}/{key}")),
        },
        (Method::PUT, Some(key)) => {
            let fields = match parse_json::<Map<String, Value>>(&body) {
                Ok(fields) => fields,
                Err(message) => return error(StatusCode::BAD_REQUEST, message),
            };
            let (put, record) = shared.records.lock().put(collection, key, fields);
            let status = match put {
                Put::Created => StatusCode::CREATED,
                Put::Updated | Put::Unchanged => StatusCode::OK,
            };
            answer(status, json!(record))
        }
        (Method::DELETE, Some(key)) => {
            if shared.records.lock().delete(collection, key) {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::NO_CONTENT;
                response
            } else {
                error(StatusCode::NOT_FOUND, format!("no {collection}/{key}"))
            }
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET on a collection; GET, PUT or DELETE on a key",
        ),
    }
}

/// Reads a JSON body of at most [`BODY_BYTES_MAX`] bytes.
async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Answer> {
    let body = Limited::new(req.into_body(), BODY_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?
        .to_bytes();
    parse_json(&body).map_err(|message| error(StatusCode::BAD_REQUEST, message))
}

/// Parses a JSON body; what is wrong with it.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad JSON body: {e}"))
}
