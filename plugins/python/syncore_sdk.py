"""HTTP and configuration helpers for syncore plugins written in Python (componentize-py).

The Python counterpart of the Rust SDK's `http` and `config` modules
(plugin-sdk/src/http.rs, plugin-sdk/src/config.rs), over the bindings componentize-py
generates for world `syncore:lang-http/cord-http-plugin` (../lang-wit-http/world.wit):

- `config_get(key)` and `secret(name)`: what the embedder granted this plugin;
- `request(method, url, headers, body)`: one blocking request through
  `wasi:http/outgoing-handler`, following redirects up to `REDIRECTS_MAX` times (each hop is
  a new request the host checks against the grant, so a redirect to an origin not granted
  fails too), returning a `Response` or raising `HttpError`.

Requests block the instance on `wasi:io/poll` (no asyncio event loop); in an asynchronous
call (the runtime's) the host suspends the instance there, so a plugin waiting on the
network holds no host thread. A request to
an origin the embedder did not grant fails the call, with a message naming the plugin and
the origin, whatever the plugin does with the error it sees.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from componentize_py_types import Err
from wit_world.imports import config, outgoing_handler, streams
from wit_world.imports import http_types as ht

#: Most redirects followed for one request.
REDIRECTS_MAX = 5

#: Bytes written or read per stream operation.
CHUNK = 4096
READ_MAX = 64 << 10


def config_get(key: str) -> Optional[str]:
    """The configuration value `key`, if the embedder set one."""
    return config.get(key)


def secret(name: str) -> Optional[str]:
    """The secret `name`, or None when it was not granted (the host then fails the call,
    naming the secret, whatever the plugin returns)."""
    try:
        return config.secret(name)
    except Err:
        return None


class HttpError(Exception):
    """Why a request failed: the method, the URL and the cause, as one message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass
class Response:
    """A response: the status, the headers (names lowercase, in order) and the whole body."""

    status: int
    headers: List[Tuple[str, str]]
    body: bytes

    def text(self) -> str:
        """The body as text (invalid UTF-8 replaced)."""
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> Optional[str]:
        """The first header named `name` (lowercase)."""
        for n, v in self.headers:
            if n == name:
                return v
        return None


def status_error(method: str, url: str, response: Response) -> HttpError:
    """An unexpected status, with the start of the body: "PUT url: status 500 (body)"."""
    head = response.text().encode("utf-8")[:200].decode("utf-8", "ignore")
    return HttpError("%s %s: status %d (%s)" % (method, url, response.status, head.strip()))


def request(
    method: str,
    url: str,
    headers: Sequence[Tuple[str, str]] = (),
    body: Optional[bytes] = None,
) -> Response:
    """Any request, following redirects (a 303 turns into a GET without a body).

    Raises `HttpError` for a bad URL, a refused origin, a transport error, a timeout or more
    than `REDIRECTS_MAX` redirects."""
    for _ in range(REDIRECTS_MAX + 1):
        response = _send(method, url, headers, body)
        location = response.header("location")
        if response.status not in (301, 302, 303, 307, 308) or location is None:
            return response
        if response.status == 303:
            method, body = "GET", None
        url = _resolve(url, location)
    raise HttpError("%s %s: more than %d redirects" % (method, url, REDIRECTS_MAX))


def _split(url: str) -> Tuple[str, str, str]:
    """`scheme://authority/path?query` into its parts (the path defaults to `/`)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise HttpError("bad URL %r: expected scheme://host/path" % url)
    slash = rest.find("/")
    authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if not authority:
        raise HttpError("bad URL %r: no host" % url)
    return scheme, authority, path


def _resolve(base: str, location: str) -> str:
    """`location` relative to `base` (absolute URLs and absolute paths)."""
    if "://" in location:
        return location
    if location.startswith("/"):
        try:
            scheme, authority, _ = _split(base)
        except HttpError:
            return location
        return "%s://%s%s" % (scheme, authority, location)
    return location


def _code(code: object) -> str:
    """A WASI HTTP error code as the Rust SDK prints it: `ErrorCode::ConnectionRefused`."""
    name = type(code).__name__
    if name.startswith("ErrorCode_"):
        name = name[len("ErrorCode_"):]
    value = getattr(code, "value", None)
    return "ErrorCode::%s" % name if value is None else "ErrorCode::%s(%r)" % (name, value)


_METHODS = {
    "GET": ht.Method_Get,
    "HEAD": ht.Method_Head,
    "POST": ht.Method_Post,
    "PUT": ht.Method_Put,
    "DELETE": ht.Method_Delete,
    "PATCH": ht.Method_Patch,
}


def _send(
    method: str, url: str, headers: Sequence[Tuple[str, str]], body: Optional[bytes]
) -> Response:
    """One request, no redirects."""

    def fail(what: str) -> HttpError:
        return HttpError("%s %s: %s" % (method, url, what))

    scheme, authority, path = _split(url)
    fields = ht.Fields()
    # Every request but a bodiless GET or HEAD says its length (0 without a body), so that it
    # is complete on the wire once its bytes are sent (as the Rust SDK does, for the same
    # reason: a server answering before reading a chunked body may close the connection).
    all_headers = list(headers)
    if body is not None or method not in ("GET", "HEAD"):
        all_headers.append(("content-length", str(len(body or b""))))
    for name, value in all_headers:
        try:
            fields.append(name, value.encode("utf-8"))
        except Err as e:
            raise fail("header %s: %s" % (name, type(e.value).__name__))
    outgoing_request = ht.OutgoingRequest(fields)
    method_value = _METHODS[method]() if method in _METHODS else ht.Method_Other(method)
    if scheme == "http":
        scheme_value = ht.Scheme_Http()
    elif scheme == "https":
        scheme_value = ht.Scheme_Https()
    else:
        scheme_value = ht.Scheme_Other(scheme)
    for what, setter, value in (
        ("method", outgoing_request.set_method, method_value),
        ("scheme", outgoing_request.set_scheme, scheme_value),
        ("authority", outgoing_request.set_authority, authority),
        ("path", outgoing_request.set_path_with_query, path),
    ):
        try:
            setter(value)
        except Err:
            raise fail("the host refused the %s" % what)
    outgoing_body = outgoing_request.body()
    try:
        future = outgoing_handler.handle(outgoing_request, None)
    except Err as e:
        raise fail(_code(e.value))
    with future:
        with outgoing_body.write() as stream:
            data = body or b""
            for start in range(0, len(data), CHUNK):
                try:
                    stream.blocking_write_and_flush(data[start : start + CHUNK])
                except Err as e:
                    raise fail("writing the body: %s" % type(e.value).__name__)
        try:
            ht.OutgoingBody.finish(outgoing_body, None)
        except Err as e:
            raise fail(_code(e.value))
        while True:
            ready = future.get()
            if ready is not None:
                break
            with future.subscribe() as pollable:
                pollable.block()
        if isinstance(ready, Err):
            raise fail("the response was taken twice")
        if isinstance(ready.value, Err):
            raise fail(_code(ready.value.value))
        with ready.value.value as incoming:
            status = incoming.status()
            with incoming.headers() as fields:
                response_headers = [
                    (n.lower(), v.decode("utf-8", "replace")) for n, v in fields.entries()
                ]
            chunks = []
            incoming_body = incoming.consume()
            with incoming_body.stream() as stream:
                while True:
                    try:
                        chunks.append(stream.blocking_read(READ_MAX))
                    except Err as e:
                        if isinstance(e.value, streams.StreamError_Closed):
                            break
                        raise fail("reading the body: %s" % e.value.value.to_debug_string())
            with ht.IncomingBody.finish(incoming_body):
                pass
    return Response(status, response_headers, b"".join(chunks))
