//! Keep-alive connections for outbound HTTP: [`HttpPool`], idle HTTP/1.1 connections by
//! origin (`scheme://host:port`), so a plugin's next request to the same origin skips the
//! TCP connect and the handshake.
//!
//! ## Where it sits
//! Every loaded plugin has its own pool (plugins never share a connection). The `wasi:http`
//! hook (`http.rs`) checks the grant first (origin allow-list, the request timeout, the
//! response-size cap) and only then hands the request to the pool, so a refused request never
//! touches a connection; the caps wrap the pooled response exactly as a fresh one. The
//! request goes out as the guest wrote it (headers, a bearer token it read from its granted
//! secrets): a connection carries no per-plugin state beyond the requests sent on it.
//!
//! ## A connection's life
//! A new connection is a TCP connect (`TCP_NODELAY` set: a request written in two segments
//! must not wait for a delayed ACK) and an HTTP/1.1 handshake, both within the connect
//! timeout, and a tokio task that drives it until it closes. It goes back to the pool once
//! the whole response body has arrived (or at once for a response without a body), at most
//! [`HTTP_IDLE_PER_ORIGIN_MAX`] per origin; an idle connection older than
//! [`HTTP_IDLE_TIMEOUT`], or one the server closed, is dropped when next looked at. A
//! connection whose response was not read to the end, failed, or timed out is closed, never
//! reused.
//!
//! ## A pooled connection the server closed
//! Before a pooled connection is used it must report ready (its driver task saw no close);
//! one that does not is dropped and the next idle one is tried, then a new one. If the server
//! closes it anyway in the instant between that check and the request:
//! - the request was not written (hyper hands it back): it is sent again, once, on a new
//!   connection. Always safe: the server never saw it.
//! - the request was written: it is **not** sent again, whatever its method. Its body was
//!   streamed from the guest and is gone, and the server may have acted on it; the call gets
//!   `connection-terminated`, and the host's note on the call (quoted in a failure) says a
//!   reused connection was closed after the request was sent. The guest's own retry, or the
//!   engine's backoff, decides what happens next (a PUT by key is idempotent, so the next
//!   attempt is harmless).
//!
//! ## Which runtime drives a connection
//! A connection's driver task lives on the runtime that opened it. Requests made from a
//! multi-threaded tokio runtime share the pool's idle connections (their drivers run on
//! worker threads, whoever asks). A synchronous call with outbound HTTP runs on its calling
//! thread's own current-thread runtime (`local_io.rs`), which runs its tasks only while that
//! thread blocks on it: its connections are kept apart, in that thread's share of the pool
//! (same counters, its own idle list), so a connection is only ever used by the thread that
//! drives it.
//!
//! ## Not pooled
//! `https` requests (TLS) and requests made from any other current-thread tokio runtime go
//! through wasmtime-wasi-http's `default_send_request`, a new connection per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http1::{self, SendRequest};
use parking_lot::Mutex;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use super::local_io;
use crate::clock::{Clock, RealClock};

/// Most idle connections one pool keeps per origin.
pub const HTTP_IDLE_PER_ORIGIN_MAX: usize = 256;

/// How long an idle connection is kept for reuse.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Timeouts when a request's options leave one unset (as wasmtime-wasi-http's).
const TIMEOUT_UNSET: Duration = Duration::from_secs(600);

/// Counters of a connection pool ([`HttpPool::stats`],
/// [`WasmActuator::http_stats`](super::WasmActuator::http_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpPoolStats {
    /// Connections opened by the pool.
    pub connections_opened: u64,
    /// Requests sent on a connection an earlier request had used.
    pub requests_reused: u64,
    /// Requests sent again on a new connection because the pooled one closed before the
    /// request was written.
    pub requests_retried: u64,
    /// Requests that went outside the pool (`https`, or a current-thread runtime).
    pub requests_unpooled: u64,
    /// Idle connections now.
    pub idle: usize,
}

/// A response, and the future the `wasi:http` host drives alongside its body.
pub(crate) type Sent = (
    http::Response<WasiBody>,
    Box<dyn std::future::Future<Output = Result<(), Error>> + Send>,
);

/// A failed request: the error for the guest, and a note for the call's failure message.
#[derive(Debug)]
pub(crate) struct SendFailure {
    /// What the guest gets.
    pub(crate) error: Error,
    /// The host's explanation, when the error alone would mislead.
    pub(crate) note: Option<String>,
}

impl From<Error> for SendFailure {
    fn from(error: Error) -> Self {
        SendFailure { error, note: None }
    }
}

/// A keep-alive HTTP/1.1 client: idle connections by origin (see the module docs of
/// `conn.rs`). Each plugin's outbound HTTP goes through its own pool after its grant is
/// checked; a native actuator can use one too, to send its requests with the plugins' client
/// (`benches/wasm_http.rs` does, for its native twin). Cloning shares the pool.
#[derive(Clone, Default)]
pub struct HttpPool {
    inner: Arc<Inner>,
}

/// Numbers pools apart (a thread's share of a pool is found by it).
static POOL_IDS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's shares of pools, each with the pool it belongs to.
    static SHARES: RefCell<Vec<(Weak<Inner>, HttpPool)>> = const { RefCell::new(Vec::new()) };
}

impl std::fmt::Debug for HttpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPool")
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    /// This pool's number; a thread's share of the pool has the same.
    id: u64,
    /// Idle connections by origin, oldest first.
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    /// Shared with the threads' shares of the pool.
    counters: Arc<Counters>,
    /// Idle ages are read from the engine's real clock (the only reader of time).
    clock: RealClock,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            id: POOL_IDS.fetch_add(1, Ordering::Relaxed),
            idle: Mutex::default(),
            counters: Arc::default(),
            clock: RealClock::default(),
        }
    }
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    reused: AtomicU64,
    retried: AtomicU64,
    unpooled: AtomicU64,
}

struct Idle {
    sender: SendRequest<WasiBody>,
    /// When it went idle, [`Clock::monotonic_ns`] of the pool's clock.
    since_ns: u64,
}

impl Inner {
    fn expired(&self, e: &Idle) -> bool {
        let idle = self.clock.monotonic_ns().saturating_sub(e.since_ns);
        u128::from(idle) > HTTP_IDLE_TIMEOUT.as_nanos()
    }
}

/// The outcome of one attempt on one connection.
enum Attempt {
    Answered(http::Response<hyper::body::Incoming>),
    /// The connection closed before the request was written: here it is back.
    Unsent(http::Request<WasiBody>),
    Failed(Error),
}

impl HttpPool {
    /// An empty pool.
    pub fn new() -> HttpPool {
        HttpPool::default()
    }

    /// The counters.
    /// The counters. `idle` counts the connections of the shared list, not those kept by a
    /// thread for its synchronous calls (module docs of `conn.rs`).
    pub fn stats(&self) -> HttpPoolStats {
        let inner = &self.inner;
        let counters = &inner.counters;
        HttpPoolStats {
            connections_opened: counters.opened.load(Ordering::Relaxed),
            requests_reused: counters.reused.load(Ordering::Relaxed),
            requests_retried: counters.retried.load(Ordering::Relaxed),
            requests_unpooled: counters.unpooled.load(Ordering::Relaxed),
            idle: inner.idle.lock().values().map(Vec::len).sum(),
        }
    }

    /// The calling thread's share of this pool (made on first use): the same counters, its
    /// own idle list, for the connections its own runtime drives. Shares of pools that
    /// are gone are dropped on the way.
    pub(crate) fn thread_share(&self) -> HttpPool {
        SHARES.with_borrow_mut(|shares| {
            shares.retain(|(parent, _)| parent.strong_count() > 0);
            if let Some((_, share)) = shares.iter().find(|(_, s)| s.inner.id == self.inner.id) {
                return share.clone();
            }
            let share = HttpPool {
                inner: Arc::new(Inner {
                    id: self.inner.id,
                    idle: Mutex::default(),
                    counters: self.inner.counters.clone(),
                    clock: RealClock::default(),
                }),
            };
            shares.push((Arc::downgrade(&self.inner), share.clone()));
            share
        })
    }

    /// Sends `request` (an absolute URI: scheme and authority) on an idle connection to its
    /// origin or a new one, within `options`' timeouts; the response, whose body returns the
    /// connection to the pool once it has been read to the end.
    ///
    /// Must run inside a tokio runtime.
    ///
    /// # Errors
    /// The `wasi:http` error: an invalid URI, a failed or timed-out connect, a timeout
    /// waiting for the answer, a protocol error.
    pub async fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Error> {
        self.send_request(request, options)
            .await
            .map(|(response, _)| response)
            .map_err(|failure| failure.error)
    }

    /// As [`HttpPool::send`], with the future the `wasi:http` host drives beside the body,
    /// and a note on failures the error code alone would misreport.
    pub(crate) async fn send_request(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Sent, SendFailure> {
        let http = request.uri().scheme() == Some(&http::uri::Scheme::HTTP);
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        let pool = match flavor {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) if http => Some(self.clone()),
            // The calling thread's own runtime (a synchronous call): its share of the pool.
            // Its connections' drivers ran only while the thread last blocked on it; one
            // turn of the runtime first lets them see a close that came meanwhile.
            Ok(tokio::runtime::RuntimeFlavor::CurrentThread) if http && local_io::active() => {
                tokio::task::yield_now().await;
                Some(self.thread_share())
            }
            _ => None,
        };
        match pool {
            Some(pool) => pool.send_pooled(request, options).await,
            None => {
                self.inner.counters.unpooled.fetch_add(1, Ordering::Relaxed);
                send_unpooled(request, options).await
            }
        }
    }

    /// As [`HttpPool::send_request`], on this pool's connections (the caller checked that
    /// the current runtime drives them).
    async fn send_pooled(
        &self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Sent, SendFailure> {
        let uri = request.uri();
        let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
        let address = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{authority}:80"),
        };
        let key = format!("http://{address}");
        let timeout = |t: Option<Duration>| t.unwrap_or(TIMEOUT_UNSET);
        let connect_timeout = timeout(options.and_then(|o| o.connect_timeout));
        let first_byte_timeout = timeout(options.and_then(|o| o.first_byte_timeout));
        let between_bytes_timeout =
            timeout(options.and_then(|o| o.between_bytes_timeout)).max(Duration::from_nanos(1));
        // On the wire, a request to an origin server has the origin form: path and query.
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;

        while let Some(mut sender) = self.checkout(&key) {
            // A connection whose driver saw the server close it reports an error here.
            match tokio::time::timeout(connect_timeout, sender.ready()).await {
                Ok(Ok(())) => {}
                _ => continue,
            }
            match attempt(&mut sender, request, first_byte_timeout).await {
                Attempt::Answered(response) => {
                    self.inner.counters.reused.fetch_add(1, Ordering::Relaxed);
                    return Ok(self.answer(key, sender, response, between_bytes_timeout));
                }
                Attempt::Unsent(back) => {
                    self.inner.counters.retried.fetch_add(1, Ordering::Relaxed);
                    request = back;
                    break;
                }
                Attempt::Failed(error) => {
                    let closed = matches!(&error, Error::Hyper(e) if e.is_incomplete_message() || e.is_canceled());
                    if !closed {
                        return Err(error.into());
                    }
                    return Err(SendFailure {
                        error: Error::ConnectionTerminated,
                        note: Some(format!(
                            "the server closed a reused keep-alive connection after the request was sent ({error}); not sent again, as the server may have acted on it"
                        )),
                    });
                }
            }
        }
        let mut sender = self.connect(&address, connect_timeout).await?;
        match attempt(&mut sender, request, first_byte_timeout).await {
            Attempt::Answered(response) => {
                Ok(self.answer(key, sender, response, between_bytes_timeout))
            }
            Attempt::Unsent(_) => Err(Error::ConnectionTerminated.into()),
            Attempt::Failed(error) => Err(error.into()),
        }
    }

    /// A new connection to `address` (`host:port`), its driver task spawned.
    async fn connect(
        &self,
        address: &str,
        timeout: Duration,
    ) -> Result<SendRequest<WasiBody>, Error> {
        let stream =
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
                Ok(stream) => stream.map_err(Error::Connect)?,
                Err(_) => return Err(Error::ConnectionTimeout),
            };
        stream.set_nodelay(true).map_err(Error::Connect)?;
        let (sender, connection) = tokio::time::timeout(
            timeout,
            http1::Builder::new().handshake::<_, WasiBody>(TokioIo::new(stream)),
        )
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
        // Ends when the server closes the connection, or once every sender is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.inner.counters.opened.fetch_add(1, Ordering::Relaxed);
        Ok(sender)
    }

    /// The response with a body that hands `sender` back to the pool once read to the end.
    fn answer(
        &self,
        key: String,
        sender: SendRequest<WasiBody>,
        response: http::Response<hyper::body::Incoming>,
        between_bytes_timeout: Duration,
    ) -> Sent {
        let mut home = Some(Home {
            pool: self.clone(),
            key,
            sender,
        });
        if response.body().is_end_stream() {
            // No body (204, 304, a zero length): the guest may never read one.
            if let Some(home) = home.take() {
                home.checkin();
            }
        }
        let mut timeout = tokio::time::interval(between_bytes_timeout);
        timeout.reset();
        let response = response.map(|incoming| {
            PooledBody {
                incoming,
                timeout,
                home,
            }
            .boxed_unsync()
        });
        (response, Box::new(async { Ok(()) }))
    }

    /// An idle connection to `key`, the most recently used first (the likeliest alive);
    /// drops closed and expired ones on the way.
    fn checkout(&self, key: &str) -> Option<SendRequest<WasiBody>> {
        let mut idle = self.inner.idle.lock();
        let list = idle.get_mut(key)?;
        while let Some(entry) = list.pop() {
            if !self.inner.expired(&entry) && !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    fn checkin(&self, key: String, sender: SendRequest<WasiBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.inner.idle.lock();
        let list = idle.entry(key).or_default();
        let expired = list.iter().take_while(|e| self.inner.expired(e)).count();
        list.drain(..expired);
        if list.len() < HTTP_IDLE_PER_ORIGIN_MAX {
            list.push(Idle {
                sender,
                since_ns: self.inner.clock.monotonic_ns(),
            });
        }
    }
}

/// Sends `request` on a new connection of its own (wasmtime-wasi-http's
/// `default_send_request`), closed after the response.
pub(crate) async fn send_unpooled(
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Sent, SendFailure> {
    let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
    Ok((response.map(BodyExt::boxed_unsync), Box::new(io)))
}

/// One request on one connection, within the first-byte timeout.
async fn attempt(
    sender: &mut SendRequest<WasiBody>,
    request: http::Request<WasiBody>,
    first_byte_timeout: Duration,
) -> Attempt {
    match tokio::time::timeout(first_byte_timeout, sender.try_send_request(request)).await {
        Err(_) => Attempt::Failed(Error::ConnectionReadTimeout),
        Ok(Ok(response)) => Attempt::Answered(response),
        Ok(Err(mut failed)) => match failed.take_message() {
            Some(request) => Attempt::Unsent(request),
            None => Attempt::Failed(Error::from(failed.into_error())),
        },
    }
}

/// Where a connection goes back to.
struct Home {
    pool: HttpPool,
    key: String,
    sender: SendRequest<WasiBody>,
}

impl Home {
    fn checkin(self) {
        self.pool.checkin(self.key, self.sender);
    }
}

/// A response body on a pooled connection: the between-bytes timeout, and the connection
/// back to the pool once the body has been read to the end (dropped otherwise, which closes
/// it).
struct PooledBody {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
    home: Option<Home>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(home) = self.home.take() {
            home.checkin();
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(None) => {
                this.release();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.timeout.reset();
                if this.incoming.is_end_stream() {
                    this.release();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.home = None;
                Poll::Ready(Some(Err(if e.is_timeout() {
                    Error::HttpResponseTimeout
                } else {
                    Error::from(e)
                })))
            }
            Poll::Pending => {
                ready!(this.timeout.poll_tick(cx));
                this.home = None;
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Read to the end without the final poll: the connection is clean.
        if self.incoming.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_one_share_per_live_pool() {
        let pool = HttpPool::new();
        let share = pool.thread_share();
        assert!(Arc::ptr_eq(&share.inner, &pool.thread_share().inner));
        assert!(!Arc::ptr_eq(&share.inner, &pool.inner));
        // One set of counters.
        share.inner.counters.opened.fetch_add(1, Ordering::Relaxed);
        assert_eq!(pool.stats().connections_opened, 1);
        // Another thread gets a share of its own.
        let other = std::thread::scope(|s| s.spawn(|| pool.thread_share()).join().unwrap());
        assert!(!Arc::ptr_eq(&other.inner, &share.inner));
        // The share of a pool that is gone is dropped at the next look.
        let gone = HttpPool::new();
        let _ = gone.thread_share();
        SHARES.with_borrow(|shares| assert_eq!(shares.len(), 2));
        drop(gone);
        let _ = pool.thread_share();
        SHARES.with_borrow(|shares| assert_eq!(shares.len(), 1));
    }
}
