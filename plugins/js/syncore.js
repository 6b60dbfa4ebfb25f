// HTTP and configuration helpers for syncore plugins written in JavaScript (componentize-js).
//
// The JavaScript counterpart of the Rust SDK's `http` and `config` modules
// (plugin-sdk/src/http.rs, plugin-sdk/src/config.rs):
//
// - `configGet(key)` and `secret(name)`: what the embedder granted this plugin
//   (`syncore:plugin/config`);
// - `request(method, url, headers, body)`: one request with the runtime's `fetch`, which
//   StarlingMonkey sends through `wasi:http/outgoing-handler` (build with the `http` feature;
//   see build.sh). Redirects are followed by `fetch`, each hop a new request the host checks
//   against the grant. It resolves to `{ status, headers, body }` (the body as text) or
//   rejects with an `HttpError`.
//
// An export that returns a promise is run to completion by componentize-js (it runs the
// event loop inside the call). A request to an origin the embedder did not grant fails the
// call, with a message naming the plugin and the origin, whatever the plugin does with the
// error it sees.

import { get, secret as getSecret } from "syncore:plugin/config@0.2.0";

/** Why a request failed: the method, the URL and the cause, as one message. */
export class HttpError extends Error {
  constructor(message) {
    super(message);
    this.name = "HttpError";
  }
}

/** The configuration value `key`, or undefined when the embedder set none. */
export function configGet(key) {
  return get(key);
}

/**
 * The secret `name`, or undefined when it was not granted (the host then fails the call,
 * naming the secret, whatever the plugin returns).
 */
export function secret(name) {
  try {
    return getSecret(name);
  } catch {
    return undefined;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An unexpected status, with the start of the body: "PUT url: status 500 (body)". */
export function statusError(method, url, response) {
  const head = decoder.decode(encoder.encode(response.body).slice(0, 200)).replace(/\uFFFD+$/, "");
  return new HttpError(`${method} ${url}: status ${response.status} (${head.trim()})`);
}

/**
 * Sends one request; resolves to `{ status, headers, body }` (header names lowercase, the
 * body as text). Every request but a bodiless GET or HEAD says its length, as the Rust
 * SDK's do, so that it is complete on the wire once its bytes are sent.
 */
export async function request(method, url, headers = [], body = undefined) {
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/]+/i.test(url)) {
    throw new HttpError(`bad URL ${JSON.stringify(url)}: expected scheme://host/path`);
  }
  const bytes = body === undefined ? undefined : encoder.encode(body);
  const all = new Headers(headers);
  if (bytes !== undefined || (method !== "GET" && method !== "HEAD")) {
    all.set("content-length", String(bytes === undefined ? 0 : bytes.length));
  }
  let response;
  try {
    response = await fetch(url, { method, headers: all, body: bytes });
  } catch (e) {
    throw new HttpError(`${method} ${url}: ${e && e.message ? e.message : e}`);
  }
  let text;
  try {
    text = await response.text();
  } catch (e) {
    throw new HttpError(`${method} ${url}: reading the body: ${e && e.message ? e.message : e}`);
  }
  return { status: response.status, headers: [...response.headers], body: text };
}
