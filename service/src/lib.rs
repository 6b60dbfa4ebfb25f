//! # syncore-service: the synchronizer as a durable service
//!
//! The pieces of `syncore serve DEPLOYMENT`:
//! - [`InputLog`], the durable log of accepted inputs with snapshots, and [`SqliteLog`],
//!   its embedded implementation (SQLite in WAL mode with group commit; its module says
//!   why SQLite);
//! - what is logged: the scheduler's own inputs ([`syncore::sched::Input`]: change sets,
//!   reports, deliveries, ticks, shutdown, each with its time), encoded with
//!   `Input::to_bytes` and applied with `Scheduler::step`, live and on replay;
//! - [`Deployment`], the deployment file: schema, what syncs each model (a built-in
//!   actuator, or a WASM plugin with its grants, loaded once at start and run
//!   asynchronously), secrets, settings;
//! - the driver (one thread owning the [`syncore::sched::Scheduler`]: leases, limits,
//!   priorities, timeouts and re-syncs are the library's), the HTTP API, `/metrics` and the web page
//!   ([`Service`]); and [`Client`], for `syncore apply`, `get` and `status`.
//!
//! Recovery on start: the latest snapshot (`Scheduler::resume`), then the log tail
//! replayed with `Scheduler::step` (the scheduler is a pure function of its inputs, so the
//! state is the one before the crash, leases in flight included, whose actuations start
//! again), then migrated onto the deployment's schema, settings and scheduling
//! configuration when they changed (`Scheduler::migrate`).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod actuate;
mod client;
mod deploy;
mod driver;
mod errors;
mod http;
mod log;
mod metrics;
mod server;
mod sqlite;

pub use actuate::{Actuate, Doc};
pub use client::{Answer, Client};
pub use deploy::{
    sched_config, DeployError, Deployment, DeploymentDef, ModelDeploy, PluginLogs, SecretSource,
    ServiceSettings,
};
pub use driver::{now_ms, Accepted, Refused, Span};
pub use errors::ApiError;
pub use log::{frame, unframe, Ack, InputLog, LogError, LogStats, Recovery, Seq, FSYNC_BUCKETS_S};
pub use metrics::{Histogram, Metrics, LATENCY_BUCKETS_S};
pub use server::{recover, Recovered, Service, StartError};
pub use sqlite::{SqliteLog, BATCH_MAX};

/// Runs `syncore serve DEPLOYMENT` until SIGTERM or Ctrl-C: prints the address, then on the
/// signal stops gracefully.
///
/// # Errors
/// What stopped the start, in words.
pub fn serve_main(path: &std::path::Path) -> Result<(), String> {
    let deploy = Deployment::load(path).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let service = Service::start(deploy).await.map_err(|e| e.to_string())?;
        let r = &service.recovered;
        println!(
            "syncore serve: listening on http://{} (snapshot {:?}, {} entries replayed{}{}, ready in {} ms)",
            service.addr,
            r.snapshot,
            r.replayed,
            r.dropped_torn.map(|s| format!(", torn entry {s} dropped")).unwrap_or_default(),
            if r.migrated { ", migrated" } else { "" },
            r.took.as_millis()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        println!("syncore serve: stopping");
        service.stop().await;
        println!("syncore serve: stopped");
        Ok(())
    })
}
