//! Prometheus metrics of the daemon (the `prometheus-client` crate), served at
//! `GET /metrics` in the Prometheus text format 0.0.4, or in OpenMetrics text when
//! the scraper asks for it (`Accept: application/openmetrics-text`).
//!
//! One [`Metrics`] lives in the status [`Registry`](crate::registry::Registry)
//! (`registry.metrics()`). The registry itself records task outcomes, step
//! durations, hub errors and OOM kills as it learns of them; the code that measures
//! pulls, unpacking, container starts and buildroot cache lookups calls the methods
//! here. Host gauges (load, capacity, readiness, session) are set from the registry
//! at each scrape ([`Metrics::encode`]), so they are never stale. docs/status-api.md
//! lists every metric and which code feeds it.

use std::fmt;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry as PromRegistry;

use crate::registry::{HostStatus, SessionState, Snapshot};

/// `Content-Type` of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Longest label value kept (longer ones are cut; labels come from our own code and
/// Koji method names, this only bounds the damage of a surprise).
const MAX_LABEL: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    method: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabel {
    fault: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type FGauge = Gauge<f64, AtomicU64>;

fn task_histogram() -> Histogram {
    // 1 s … ~4.5 h
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

fn step_histogram() -> Histogram {
    // 10 ms … ~12 h
    Histogram::new(exponential_buckets(0.01, 3.0, 15))
}

fn label(s: &str) -> String {
    let mut cut = s.len().min(MAX_LABEL);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_owned()
}

/// The daemon's metrics.
pub struct Metrics {
    registry: PromRegistry,
    tasks: Family<TaskLabels, Counter>,
    task_duration: HistogramFamily<MethodLabel>,
    step_duration: HistogramFamily<StepLabel>,
    buildroot_cache: Family<ResultLabel, Counter>,
    pull_bytes: Counter,
    pull_duration: Histogram,
    unpack_bytes: Counter,
    unpack_seconds: Counter<f64, AtomicU64>,
    unpack_throughput: Histogram,
    container_start: Histogram,
    oom_kills: Counter,
    hub_errors: Family<FaultLabel, Counter>,
    task_load: FGauge,
    capacity: FGauge,
    maxjobs: Gauge,
    running_tasks: Gauge,
    containers_running: Gauge,
    ready: Gauge,
    hub_session: Gauge,
    start_time: FGauge,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Every family registered, all at zero.
    pub fn new() -> Metrics {
        let mut registry = PromRegistry::with_prefix("koji_adjutant");
        let m = Metrics {
            tasks: Family::default(),
            task_duration: Family::new_with_constructor(task_histogram as fn() -> Histogram),
            step_duration: Family::new_with_constructor(step_histogram as fn() -> Histogram),
            buildroot_cache: Family::default(),
            pull_bytes: Counter::default(),
            // 100 ms … ~27 min
            pull_duration: Histogram::new(exponential_buckets(0.1, 2.0, 15)),
            unpack_bytes: Counter::default(),
            unpack_seconds: Counter::default(),
            // 1 MiB/s … 16 GiB/s
            unpack_throughput: Histogram::new(exponential_buckets(1048576.0, 2.0, 15)),
            // 1 ms … ~16 s
            container_start: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            oom_kills: Counter::default(),
            hub_errors: Family::default(),
            task_load: FGauge::default(),
            capacity: FGauge::default(),
            maxjobs: Gauge::default(),
            running_tasks: Gauge::default(),
            containers_running: Gauge::default(),
            ready: Gauge::default(),
            hub_session: Gauge::default(),
            start_time: FGauge::default(),
            registry: PromRegistry::default(),
        };
        registry.register(
            "build",
            "Version of koji-adjutant",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            }),
        );
        registry.register(
            "tasks",
            "Tasks ended, by Koji method and outcome (closed, failed, canceled, refused, freed)",
            m.tasks.clone(),
        );
        registry.register(
            "task_duration_seconds",
            "Time from opening a task to its end, by Koji method",
            m.task_duration.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Duration of task steps (pull, install, build, upload...), by step",
            m.step_duration.clone(),
        );
        registry.register(
            "buildroot_cache_lookups",
            "Buildroot cache lookups, by result (hit, miss)",
            m.buildroot_cache.clone(),
        );
        registry.register(
            "image_pull_bytes",
            "Bytes of image blobs downloaded",
            m.pull_bytes.clone(),
        );
        registry.register(
            "image_pull_duration_seconds",
            "Duration of image pulls",
            m.pull_duration.clone(),
        );
        registry.register(
            "unpack_bytes",
            "Bytes of layers unpacked (uncompressed tar bytes)",
            m.unpack_bytes.clone(),
        );
        registry.register(
            "unpack_duration_seconds",
            "Time spent unpacking layers",
            m.unpack_seconds.clone(),
        );
        registry.register(
            "unpack_throughput_bytes_per_second",
            "Unpack throughput of each layer",
            m.unpack_throughput.clone(),
        );
        registry.register(
            "container_start_duration_seconds",
            "Time from asking the runtime for a container to its pid 1 running",
            m.container_start.clone(),
        );
        registry.register(
            "oom_kills",
            "Processes killed for lack of memory in containers",
            m.oom_kills.clone(),
        );
        registry.register(
            "hub_errors",
            "Failed hub calls seen by the daemon, by fault class or failure kind",
            m.hub_errors.clone(),
        );
        registry.register(
            "task_load",
            "Sum of the weights of the tasks running here (not waiting)",
            m.task_load.clone(),
        );
        registry.register(
            "capacity",
            "Capacity of this host on the hub",
            m.capacity.clone(),
        );
        registry.register("maxjobs", "maxjobs of this host", m.maxjobs.clone());
        registry.register(
            "running_tasks",
            "Tasks running here",
            m.running_tasks.clone(),
        );
        registry.register(
            "containers_running",
            "Containers running",
            m.containers_running.clone(),
        );
        registry.register(
            "ready",
            "1 when the host reported itself ready for tasks at its last check-in",
            m.ready.clone(),
        );
        registry.register(
            "hub_session",
            "1 when logged in to the hub (with the exclusive host session)",
            m.hub_session.clone(),
        );
        registry.register(
            "start_time_seconds",
            "Start time of the daemon, seconds since the epoch",
            m.start_time.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A task ended with `outcome` after `secs`.
    pub fn task_finished(&self, method: &str, outcome: &str, secs: f64) {
        self.tasks
            .get_or_create(&TaskLabels {
                method: label(method),
                outcome: label(outcome),
            })
            .inc();
        self.task_duration
            .get_or_create(&MethodLabel {
                method: label(method),
            })
            .observe(secs.max(0.0));
    }

    /// A step called `name` took `secs`.
    pub fn step(&self, name: &str, secs: f64) {
        self.step_duration
            .get_or_create(&StepLabel { step: label(name) })
            .observe(secs.max(0.0));
    }

    /// A hub call failed (`fault`: the fault class, or `transport`, `decode`...).
    pub fn hub_error(&self, fault: &str) {
        self.hub_errors
            .get_or_create(&FaultLabel {
                fault: label(fault),
            })
            .inc();
    }

    /// A buildroot cache lookup.
    pub fn buildroot_cache(&self, hit: bool) {
        self.buildroot_cache
            .get_or_create(&ResultLabel {
                result: if hit { "hit" } else { "miss" }.to_owned(),
            })
            .inc();
    }

    /// An image pull downloaded `bytes` in `secs`.
    pub fn image_pull(&self, bytes: u64, secs: f64) {
        self.pull_bytes.inc_by(bytes);
        self.pull_duration.observe(secs.max(0.0));
    }

    /// A layer of `bytes` (uncompressed) was unpacked in `secs`.
    pub fn unpack(&self, bytes: u64, secs: f64) {
        self.unpack_bytes.inc_by(bytes);
        let secs = secs.max(0.0);
        self.unpack_seconds.inc_by(secs);
        if secs > 0.0 {
            self.unpack_throughput.observe(bytes as f64 / secs);
        }
    }

    /// A container took `secs` to start.
    pub fn container_start(&self, secs: f64) {
        self.container_start.observe(secs.max(0.0));
    }

    /// A process was killed for lack of memory.
    pub fn oom_kill(&self) {
        self.oom_kills.inc();
    }

    fn set_host(&self, h: &HostStatus, containers_running: usize) {
        self.task_load.set(h.task_load);
        self.capacity.set(h.capacity);
        self.maxjobs.set(h.maxjobs);
        self.running_tasks
            .set(i64::try_from(h.running).unwrap_or(i64::MAX));
        self.containers_running
            .set(i64::try_from(containers_running).unwrap_or(i64::MAX));
        self.ready.set(i64::from(h.ready));
        self.hub_session
            .set(i64::from(h.session != SessionState::LoggedOut));
        self.start_time.set(h.start_time);
    }

    /// The metrics as text: OpenMetrics (ending `# EOF`) or Prometheus 0.0.4. The
    /// host gauges are set from `snap` first.
    pub fn encode(&self, snap: &Snapshot, openmetrics: bool) -> Result<String, fmt::Error> {
        let running = snap
            .containers
            .values()
            .filter(|c| c.state == crate::registry::ContainerState::Running)
            .count();
        self.set_host(&snap.host, running);
        let mut out = String::with_capacity(8192);
        if openmetrics {
            text::encode(&mut out, &self.registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        }
        Ok(out)
    }
}
