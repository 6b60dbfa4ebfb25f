//! Starting and stopping the service: recovery from the log (snapshot plus replayed
//! scheduler inputs), migration onto the deployment's schema and scheduling settings, the
//! driver thread, the HTTP listener, and graceful shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use syncore::sched::{Effect, Input, SchedMigrateError, Scheduler};
use syncore::Engine;
use tokio::sync::{broadcast, oneshot};

use crate::actuate::{self, ModelActuator};
use crate::deploy::Deployment;
use crate::driver::{Driver, DriverParts, Msg};
use crate::http::{self, Api, Bucket};
use crate::log::{InputLog, LogError, Seq};
use crate::metrics::Metrics;
use crate::sqlite::SqliteLog;

/// The service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The log could not be opened or is corrupt.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The snapshot in the log could not be restored.
    #[error("snapshot at log entry {seq}: {message}")]
    Snapshot {
        /// Its position.
        seq: Seq,
        /// Why.
        message: String,
    },
    /// A logged entry could not be decoded or replayed.
    #[error("log entry {seq}: {message}")]
    Replay {
        /// Its position.
        seq: Seq,
        /// Why.
        message: String,
    },
    /// The state cannot move onto the deployment's schema or settings.
    #[error("cannot migrate the stored state onto the deployment: {0}")]
    Migrate(Box<syncore::MigrateError>),
    /// The data directory or the listen address could not be used.
    #[error("{0}")]
    Io(String),
}

/// What recovery found, for the start-up line.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The snapshot's position, if there was one.
    pub snapshot: Option<Seq>,
    /// Entries replayed after it.
    pub replayed: usize,
    /// A torn last entry dropped.
    pub dropped_torn: Option<Seq>,
    /// Whether the state was migrated onto a new schema, settings or scheduling
    /// configuration (or reopened after a graceful shutdown).
    pub migrated: bool,
    /// Actuations in flight in the recovered state, started again.
    pub in_flight: usize,
    /// Time from opening the log to a ready scheduler.
    pub took: Duration,
}

/// Opens the log in `dir` and rebuilds the scheduler: the latest snapshot resumed with
/// its leases in flight ([`Scheduler::resume`]), then the tail replayed with
/// [`Scheduler::step`], then moved onto `deploy`'s schema, settings and scheduling
/// configuration if they differ ([`Scheduler::migrate`]; also after a graceful shutdown,
/// whose final snapshot is draining). A migrated state is snapshotted at once: it is the
/// base the entries logged from now on replay onto.
///
/// Returns the scheduler, the log, the last position applied and the latest snapshot's
/// position.
///
/// # Errors
/// A [`StartError`] naming the log position, or what cannot be migrated.
pub fn recover(
    deploy: &Deployment,
) -> Result<(Scheduler, Arc<SqliteLog>, Seq, Seq, Recovered), StartError> {
    let start = Instant::now();
    std::fs::create_dir_all(&deploy.data_dir)
        .map_err(|e| StartError::Io(format!("{}: {e}", deploy.data_dir.display())))?;
    let (log, rec) = SqliteLog::open(&deploy.data_dir.join("log.sqlite"))?;
    let mut info = Recovered {
        snapshot: rec.snapshot.as_ref().map(|(s, _)| *s),
        replayed: rec.tail.len(),
        dropped_torn: rec.dropped_torn,
        ..Recovered::default()
    };
    let mut snap_seq = 0;
    let mut sched = match &rec.snapshot {
        Some((seq, bytes)) => {
            snap_seq = *seq;
            // The log checked the snapshot's CRC-32 frame when it read it back.
            Scheduler::resume_verified(bytes).map_err(|e| StartError::Snapshot {
                seq: *seq,
                message: e.to_string(),
            })?
        }
        None => Scheduler::new(
            Engine::new(deploy.schema.clone(), deploy.def.settings.clone()),
            deploy.sched.clone(),
        )
        .map_err(|e| StartError::Io(e.to_string()))?,
    };
    let mut last = snap_seq;
    let mut out = Vec::new();
    for (seq, bytes) in &rec.tail {
        let input = Input::from_bytes(bytes).map_err(|e| StartError::Replay {
            seq: *seq,
            message: e.to_string(),
        })?;
        out.clear();
        match sched.step(input, &mut out) {
            Effect::Refused(e) => {
                return Err(StartError::Replay {
                    seq: *seq,
                    message: format!("the logged change set no longer applies: {e}"),
                })
            }
            Effect::Reported(Err(e)) => {
                return Err(StartError::Replay {
                    seq: *seq,
                    message: format!("the logged report no longer applies: {e}"),
                })
            }
            _ => {}
        }
        last = *seq;
    }
    let log = Arc::new(log);
    let engine = sched.engine();
    if engine.schema().def() != deploy.schema.def()
        || engine.config() != &deploy.def.settings
        || sched.config() != &deploy.sched
        || sched.draining()
    {
        sched = sched
            .migrate(
                deploy.schema.clone(),
                deploy.def.settings.clone(),
                deploy.sched.clone(),
            )
            .map_err(|e| match e {
                SchedMigrateError::Engine(e) => StartError::Migrate(e),
                other => StartError::Io(other.to_string()),
            })?;
        info.migrated = true;
    }
    info.in_flight = sched.in_flight() + sched.restored_leases().len();
    if info.migrated || (rec.snapshot.is_none() && last == 0) {
        // The base for entries logged from now on.
        log.snapshot_wait(last, sched.checkpoint())?;
        snap_seq = last;
    }
    info.took = start.elapsed();
    Ok((sched, log, last, snap_seq, info))
}

/// A running service.
pub struct Service {
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    /// What recovery found.
    pub recovered: Recovered,
    tx: crossbeam::channel::Sender<Msg>,
    driver: Option<std::thread::JoinHandle<()>>,
    stop_http: Option<oneshot::Sender<()>>,
    http: Option<tokio::task::JoinHandle<()>>,
    log: Arc<SqliteLog>,
    grace: Duration,
}

impl Service {
    /// Recovers the state and starts the driver and the HTTP listener on `runtime`.
    ///
    /// # Errors
    /// A [`StartError`].
    pub async fn start(deploy: Deployment) -> Result<Service, StartError> {
        let (sched, log, applied, snap_seq, recovered) = recover(&deploy)?;
        let schema = sched.engine().schema().clone();
        let mut actuators: Vec<Option<ModelActuator>> = Vec::new();
        for m in schema.models() {
            let d = deploy.def.models.get(&m.name);
            actuators.push(d.map(|d| match deploy.plugins.get(&m.name) {
                Some(plugin) => ModelActuator::Async(Arc::new(plugin.clone())),
                None => ModelActuator::Blocking(Arc::from(actuate::builtin(d, &deploy.secrets))),
            }));
        }
        let (events, _) = broadcast::channel(4096);
        deploy.plugin_logs.connect(events.clone());
        let metrics = Arc::new(Metrics::default());
        let s = &deploy.def.service;
        let dyn_log: Arc<dyn InputLog> = log.clone();
        let (driver, tx) = Driver::new(
            sched,
            DriverParts {
                log: dyn_log.clone(),
                applied,
                last_snapshot: snap_seq,
                snapshot_every: s.snapshot_every,
                actuators,
                events: events.clone(),
                metrics: metrics.clone(),
                runtime: tokio::runtime::Handle::current(),
            },
        );
        let initial = (applied == 0).then(|| deploy.def.initial.clone()).flatten();
        let driver = std::thread::Builder::new()
            .name("syncore-driver".into())
            .spawn(move || driver.run())
            .map_err(|e| StartError::Io(format!("cannot start the driver: {e}")))?;
        if let Some(set) = initial {
            let (otx, orx) = oneshot::channel();
            let _ = tx.send(Msg::Apply(set, Instant::now(), otx));
            match orx.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(StartError::Io(format!(
                        "the deployment's initial change set: {e:?}"
                    )))
                }
                Err(_) => return Err(StartError::Io("the driver stopped".into())),
            }
        }
        let api = Api {
            tx: tx.clone(),
            metrics,
            log: dyn_log,
            events,
            token: deploy.token.as_deref().map(Arc::from),
            bucket: (s.rate_per_s > 0)
                .then(|| Arc::new(parking_lot::Mutex::new(Bucket::new(s.rate_per_s)))),
        };
        let listener = tokio::net::TcpListener::bind(deploy.listen)
            .await
            .map_err(|e| StartError::Io(format!("listen {}: {e}", deploy.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Io(e.to_string()))?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = http::router(api, s.body_max);
        let http = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
        });
        Ok(Service {
            addr,
            recovered,
            tx,
            driver: Some(driver),
            stop_http: Some(stop_tx),
            http: Some(http),
            log,
            grace: Duration::from_millis(s.shutdown_grace_ms),
        })
    }

    /// The log's counters (appends, commits, commit durations), as `/metrics` shows them.
    pub fn log_stats(&self) -> crate::LogStats {
        self.log.stats()
    }

    /// Graceful stop: no new requests, running actuations finish (or are abandoned after
    /// the grace period, to run again after the restart), then a snapshot.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop_http.take() {
            let _ = s.send(());
        }
        let (done_tx, done_rx) = oneshot::channel();
        let _ = self
            .tx
            .send(Msg::Shutdown(Instant::now() + self.grace, done_tx));
        let _ = done_rx.await;
        if let Some(h) = self.http.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
        }
        if let Some(d) = self.driver.take() {
            let _ = tokio::task::spawn_blocking(move || d.join()).await;
        }
        self.log.close();
    }
}
