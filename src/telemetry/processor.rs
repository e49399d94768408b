//! Our span processor: a bounded queue in front of an `otlp-export` thread
//! that batches spans and exports them, counting every span it loses.
//!
//! Used instead of the SDK's `BatchSpanProcessor` so drops are visible as a
//! Prometheus counter and so every wait is bounded: `on_end` never blocks
//! (`try_send`; a full queue drops the span and counts it), and flush and
//! shutdown wait at most their timeout even when the collector hangs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, after, bounded, select};
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::{IntCounter, Registry};

/// Name of the counter of spans the collector accepted.
pub const EXPORTED_METRIC: &str = "oracle_watchdog_trace_spans_exported_total";
/// Name of the counter of spans lost (queue full, export failed, shut down).
pub const DROPPED_METRIC: &str = "oracle_watchdog_trace_spans_dropped_total";

/// Sizes and timers of the queue and the export thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorConfig {
    /// Finished spans waiting for export; beyond this they are dropped.
    pub queue_capacity: usize,
    /// Most spans sent in one export request.
    pub max_batch: usize,
    /// A partial batch is exported after at most this long.
    pub export_interval: Duration,
    /// How long `force_flush` waits for the export thread.
    pub flush_timeout: Duration,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            queue_capacity: 2048,
            max_batch: 512,
            export_interval: Duration::from_secs(2),
            flush_timeout: Duration::from_secs(5),
        }
    }
}

/// The two span counters, created before the mode's registry exists and
/// registered on it later with [`SpanCounters::register`].
#[derive(Debug, Clone)]
pub struct SpanCounters {
    /// Spans the collector accepted.
    pub exported: IntCounter,
    /// Spans that never reached the collector.
    pub dropped: IntCounter,
}

impl SpanCounters {
    /// Unregistered counters with their documented names.
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(SpanCounters {
            exported: IntCounter::new(
                EXPORTED_METRIC,
                "Trace spans accepted by the OTLP collector.",
            )?,
            dropped: IntCounter::new(
                DROPPED_METRIC,
                "Trace spans dropped: export queue full, export failed or exporter shut down.",
            )?,
        })
    }

    /// Adds both counters to `registry` (the mode's `/metrics`).
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.exported.clone()))?;
        registry.register(Box::new(self.dropped.clone()))
    }
}

enum Control {
    Flush(Sender<OTelSdkResult>),
    Shutdown(Sender<OTelSdkResult>),
}

/// A [`SpanProcessor`] that queues finished spans for the `otlp-export`
/// thread. Generic over the exporter so tests can plug in a fake one.
pub struct QueueProcessor<E: SpanExporter + 'static> {
    spans: Sender<SpanData>,
    control: Sender<Control>,
    exporter: Arc<Mutex<E>>,
    counters: SpanCounters,
    config: ProcessorConfig,
    thread: Mutex<Option<JoinHandle<()>>>,
    shut_down: AtomicBool,
}

impl<E: SpanExporter + 'static> std::fmt::Debug for QueueProcessor<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueProcessor")
            .field("queued", &self.spans.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<E: SpanExporter + 'static> QueueProcessor<E> {
    /// Starts the `otlp-export` thread around `exporter`.
    pub fn start(
        exporter: E,
        counters: SpanCounters,
        config: ProcessorConfig,
    ) -> std::io::Result<Self> {
        let (spans_tx, spans_rx) = bounded(config.queue_capacity.max(1));
        let (control_tx, control_rx) = bounded(16);
        let exporter = Arc::new(Mutex::new(exporter));
        let mut export = Export {
            exporter: Arc::clone(&exporter),
            counters: counters.clone(),
            failing: false,
        };
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || export.run(&spans_rx, &control_rx, config))?;
        Ok(QueueProcessor {
            spans: spans_tx,
            control: control_tx,
            exporter,
            counters,
            config,
            thread: Mutex::new(Some(thread)),
            shut_down: AtomicBool::new(false),
        })
    }

    /// Asks the export thread for `make(reply)` and waits up to `timeout`.
    fn ask(&self, make: fn(Sender<OTelSdkResult>) -> Control, timeout: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + timeout;
        let (reply_tx, reply_rx) = bounded(1);
        if self.control.send_timeout(make(reply_tx), timeout).is_err() {
            // Either the thread is gone or 16 requests are already stuck
            // behind a hung export: both mean "not within the timeout".
            return Err(OTelSdkError::Timeout(timeout));
        }
        match reply_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(OTelSdkError::InternalFailure(
                "export thread ended without answering".into(),
            )),
        }
    }
}

impl<E: SpanExporter + 'static> SpanProcessor for QueueProcessor<E> {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        // Never blocks: a full queue (collector slow or down) or a stopped
        // export thread loses the span, visibly.
        if self.spans.try_send(span).is_err() {
            self.counters.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        self.ask(Control::Flush, self.config.flush_timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let result = self.ask(Control::Shutdown, timeout);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // A thread stuck in an export is left behind; the process exits.
        if let Some(thread) = thread
            && (result.is_ok() || thread.is_finished())
        {
            let _ = thread.join();
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called while the provider is built, before any export can hold the lock.
        self.exporter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_resource(resource);
    }
}

/// State of the export thread.
struct Export<E: SpanExporter> {
    exporter: Arc<Mutex<E>>,
    counters: SpanCounters,
    /// Whether the last export failed: warn on changes only, not per batch.
    failing: bool,
}

impl<E: SpanExporter> Export<E> {
    fn run(
        &mut self,
        spans: &Receiver<SpanData>,
        control: &Receiver<Control>,
        config: ProcessorConfig,
    ) {
        let max_batch = config.max_batch.max(1);
        let mut batch: Vec<SpanData> = Vec::with_capacity(max_batch.min(64));
        let mut deadline = Instant::now() + config.export_interval;
        loop {
            let timer = after(deadline.saturating_duration_since(Instant::now()));
            select! {
                recv(spans) -> span => match span {
                    Ok(span) => {
                        batch.push(span);
                        if batch.len() >= max_batch {
                            let _ = self.export(std::mem::take(&mut batch));
                            deadline = Instant::now() + config.export_interval;
                        }
                    }
                    // The processor is gone without a shutdown: send what we have.
                    Err(_) => {
                        let _ = self.export(std::mem::take(&mut batch));
                        return;
                    }
                },
                recv(control) -> request => match request {
                    Ok(Control::Flush(reply)) => {
                        let result = self.drain(&mut batch, spans, max_batch);
                        let _ = reply.send(result);
                        deadline = Instant::now() + config.export_interval;
                    }
                    Ok(Control::Shutdown(reply)) => {
                        let mut result = self.drain(&mut batch, spans, max_batch);
                        let stopped = self
                            .exporter
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .shutdown();
                        if result.is_ok() {
                            result = stopped;
                        }
                        let _ = reply.send(result);
                        return;
                    }
                    Err(_) => return,
                },
                recv(timer) -> _ => {
                    if !batch.is_empty() {
                        let _ = self.export(std::mem::take(&mut batch));
                    }
                    deadline = Instant::now() + config.export_interval;
                }
            }
        }
    }

    /// Exports the partial batch plus everything queued right now.
    fn drain(
        &mut self,
        batch: &mut Vec<SpanData>,
        spans: &Receiver<SpanData>,
        max_batch: usize,
    ) -> OTelSdkResult {
        let mut result = Ok(());
        let queued = spans.len();
        batch.extend(spans.try_iter().take(queued));
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(max_batch));
            let chunk = std::mem::replace(batch, rest);
            if let Err(e) = self.export(chunk) {
                result = Err(e);
            }
        }
        result
    }

    fn export(&mut self, batch: Vec<SpanData>) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len() as u64;
        let result = {
            let exporter = self.exporter.lock().unwrap_or_else(PoisonError::into_inner);
            catch_unwind(AssertUnwindSafe(|| {
                futures_executor::block_on(exporter.export(batch))
            }))
            .unwrap_or_else(|_| Err(OTelSdkError::InternalFailure("exporter panicked".into())))
        };
        match &result {
            Ok(()) => {
                self.counters.exported.inc_by(n);
                if std::mem::replace(&mut self.failing, false) {
                    tracing::info!(spans = n, "trace export works again");
                }
            }
            Err(e) => {
                self.counters.dropped.inc_by(n);
                tracing::debug!(spans = n, error = %e, "trace export failed; spans dropped");
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        error = %e,
                        "cannot export traces to the OTLP collector; dropping spans (counted in {DROPPED_METRIC}) until it answers"
                    );
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::sync::atomic::AtomicUsize;
    use std::time::SystemTime;

    /// What a fake exporter does with each batch.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Behaviour {
        Accept,
        Fail,
        /// Blocks until the gate is opened (a collector that hangs).
        Hang,
    }

    #[derive(Debug)]
    struct FakeExporter {
        behaviour: Behaviour,
        exported: Arc<Mutex<Vec<Vec<String>>>>,
        gate: Receiver<()>,
        calls: Arc<AtomicUsize>,
        resource: Arc<Mutex<Option<Resource>>>,
    }

    struct Probe {
        exported: Arc<Mutex<Vec<Vec<String>>>>,
        gate: Sender<()>,
        calls: Arc<AtomicUsize>,
        resource: Arc<Mutex<Option<Resource>>>,
    }

    fn fake(behaviour: Behaviour) -> (FakeExporter, Probe) {
        let (gate_tx, gate_rx) = bounded(0);
        let exported = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let resource = Arc::new(Mutex::new(None));
        (
            FakeExporter {
                behaviour,
                exported: exported.clone(),
                gate: gate_rx,
                calls: calls.clone(),
                resource: resource.clone(),
            },
            Probe {
                exported,
                gate: gate_tx,
                calls,
                resource,
            },
        )
    }

    impl SpanExporter for FakeExporter {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.behaviour {
                Behaviour::Accept => {
                    let names = batch.iter().map(|s| s.name.to_string()).collect();
                    self.exported.lock().unwrap().push(names);
                    Ok(())
                }
                Behaviour::Fail => Err(OTelSdkError::InternalFailure("HTTP 503".into())),
                Behaviour::Hang => {
                    let _ = self.gate.recv();
                    Err(OTelSdkError::InternalFailure("timed out".into()))
                }
            }
        }

        fn set_resource(&mut self, resource: &Resource) {
            *self.resource.lock().unwrap() = Some(resource.clone());
        }
    }

    fn span(name: &str) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(fastrand::u64(1..)),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.to_string().into(),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: vec![KeyValue::new("k", "v")],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    fn config(queue: usize, batch: usize) -> ProcessorConfig {
        ProcessorConfig {
            queue_capacity: queue,
            max_batch: batch,
            // Long enough that only explicit flushes export in these tests.
            export_interval: Duration::from_secs(3600),
            flush_timeout: Duration::from_millis(300),
        }
    }

    #[test]
    fn flush_exports_everything_queued_in_batches_and_counts_it() {
        let (exporter, probe) = fake(Behaviour::Accept);
        let counters = SpanCounters::new().unwrap();
        let p = QueueProcessor::start(exporter, counters.clone(), config(100, 2)).unwrap();
        for i in 0..5 {
            p.on_end(span(&format!("s{i}")));
        }
        p.force_flush().unwrap();
        let batches = probe.exported.lock().unwrap().clone();
        let flat: Vec<String> = batches.iter().flatten().cloned().collect();
        assert_eq!(flat, ["s0", "s1", "s2", "s3", "s4"]);
        assert!(batches.iter().all(|b| b.len() <= 2), "{batches:?}");
        assert_eq!(counters.exported.get(), 5);
        assert_eq!(counters.dropped.get(), 0);
        p.shutdown_with_timeout(Duration::from_secs(1)).unwrap();
        assert!(matches!(
            p.shutdown_with_timeout(Duration::from_secs(1)),
            Err(OTelSdkError::AlreadyShutdown)
        ));
    }

    #[test]
    fn full_batch_goes_out_without_waiting_for_the_interval() {
        let (exporter, probe) = fake(Behaviour::Accept);
        let counters = SpanCounters::new().unwrap();
        let p = QueueProcessor::start(exporter, counters.clone(), config(100, 3)).unwrap();
        for i in 0..3 {
            p.on_end(span(&format!("s{i}")));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while counters.exported.get() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(probe.exported.lock().unwrap().len(), 1);
        assert_eq!(counters.exported.get(), 3);
    }

    #[test]
    fn unsampled_spans_are_neither_exported_nor_counted() {
        let (exporter, probe) = fake(Behaviour::Accept);
        let counters = SpanCounters::new().unwrap();
        let p = QueueProcessor::start(exporter, counters.clone(), config(10, 10)).unwrap();
        let mut s = span("quiet");
        s.span_context = SpanContext::new(
            TraceId::from(1u128),
            SpanId::from(1u64),
            TraceFlags::default(),
            false,
            TraceState::default(),
        );
        p.on_end(s);
        p.force_flush().unwrap();
        assert!(probe.exported.lock().unwrap().is_empty());
        assert_eq!(counters.exported.get() + counters.dropped.get(), 0);
    }

    #[test]
    fn queue_full_drops_and_counts_without_blocking_and_flush_is_bounded() {
        let (exporter, probe) = fake(Behaviour::Hang);
        let counters = SpanCounters::new().unwrap();
        let p = QueueProcessor::start(exporter, counters.clone(), config(4, 1)).unwrap();
        // The first span is taken by the thread, which then hangs exporting it.
        p.on_end(span("first"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while probe.calls.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
        for i in 0..10 {
            p.on_end(span(&format!("s{i}")));
        }
        // 4 fit in the queue, 6 are dropped at once.
        assert_eq!(counters.dropped.get(), 6);
        assert!(matches!(p.force_flush(), Err(OTelSdkError::Timeout(_))));
        assert!(matches!(
            p.shutdown_with_timeout(Duration::from_millis(200)),
            Err(OTelSdkError::Timeout(_))
        ));
        // Release the hung export: the failed batch is counted as dropped.
        let _ = probe.gate.send(());
        let deadline = Instant::now() + Duration::from_secs(10);
        while counters.dropped.get() < 7 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(counters.dropped.get() >= 7);
        assert_eq!(counters.exported.get(), 0);
    }

    #[test]
    fn failed_exports_count_every_span_as_dropped() {
        let (exporter, _probe) = fake(Behaviour::Fail);
        let counters = SpanCounters::new().unwrap();
        let p = QueueProcessor::start(exporter, counters.clone(), config(100, 2)).unwrap();
        for i in 0..5 {
            p.on_end(span(&format!("s{i}")));
        }
        assert!(p.force_flush().is_err());
        assert_eq!(counters.dropped.get(), 5);
        assert_eq!(counters.exported.get(), 0);
    }

    #[test]
    fn spans_after_shutdown_are_counted_as_dropped() {
        let (exporter, _probe) = fake(Behaviour::Accept);
        let counters = SpanCounters::new().unwrap();
        let p = QueueProcessor::start(exporter, counters.clone(), config(10, 10)).unwrap();
        p.on_end(span("before"));
        p.shutdown_with_timeout(Duration::from_secs(1)).unwrap();
        assert_eq!(counters.exported.get(), 1);
        p.on_end(span("after"));
        assert_eq!(counters.dropped.get(), 1);
        assert!(matches!(
            p.force_flush(),
            Err(OTelSdkError::AlreadyShutdown)
        ));
    }

    #[test]
    fn resource_reaches_the_exporter() {
        let (exporter, probe) = fake(Behaviour::Accept);
        let mut p =
            QueueProcessor::start(exporter, SpanCounters::new().unwrap(), config(10, 10)).unwrap();
        let resource = Resource::builder_empty()
            .with_attribute(KeyValue::new("service.name", "x"))
            .build();
        p.set_resource(&resource);
        assert_eq!(probe.resource.lock().unwrap().as_ref(), Some(&resource));
    }

    #[test]
    fn counters_register_under_their_documented_names() {
        let registry = Registry::new();
        let counters = SpanCounters::new().unwrap();
        counters.register(&registry).unwrap();
        counters.dropped.inc();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert!(names.contains(&EXPORTED_METRIC.to_string()));
        assert!(names.contains(&DROPPED_METRIC.to_string()));
    }
}
