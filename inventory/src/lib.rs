//! A small REST inventory service on loopback: the backend the example actuators create,
//! update and delete through, and that their tests read back.
//!
//! It holds three collections, `networks`, `instances` and `ports`, of records by key:
//!
//! | request | answer |
//! |---|---|
//! | `PUT /v1/<collection>/<key>` with a JSON object | `201` (created) or `200` (updated, or unchanged: PUT by key is idempotent), the record |
//! | `GET /v1/<collection>/<key>` | `200` and the record, or `404` |
//! | `GET /v1/<collection>` | `200` and `{"items": [records sorted by key]}` |
//! | `DELETE /v1/<collection>/<key>` | `204`, or `404` if there was none |
//! | `GET`/`PUT /admin/faults` | the [`Faults`] in force / new ones (JSON) |
//! | `GET /admin/records` | every record, by collection and key |
//! | `GET /admin/health` | `200` |
//! | `GET /test/redirect?to=<url>` | `307` to `<url>` (for redirect tests) |
//! | `GET /test/bytes/<n>` | `n` bytes (for response-size tests) |
//!
//! With a token required ([`Inventory::require_token`], or `--token` for the binary), a
//! `/v1` request without `Authorization: Bearer <token>` is answered `401` and changes
//! nothing; the request log ([`Inventory::requests`]) keeps each request's `Authorization`
//! header either way.
//!
//! A record is `{"id", "key", "fields", "revision"}`; the id is the service's (a hash of the
//! collection and key, so a retried PUT gets the same one). Faults ([`Faults`]: latency, a
//! number of `500`s, never answering) apply to `/v1` only.
//!
//! Tests start it in-process with [`Inventory::start`] (127.0.0.1, a free port, its own
//! thread; stopped on drop). The binary `syncore-inventory --port 0 --print-port` runs it as
//! a process, printing the port it bound, with the same fault knobs as flags.

#![deny(missing_docs)]

mod alarm;
mod client;
mod log;
mod server;
mod store;

pub use client::{Client, Reply};
pub use server::{Faults, Inventory, Logged, BODY_BYTES_MAX, REQUEST_LOG_MAX};
pub use store::{id, Put, Record, Records, COLLECTIONS};
