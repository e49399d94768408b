//! The `wan-dns` loop thread: drives the [`Updater`] machine with real time,
//! performs its requests (detection, Cloudflare) and turns its notes into
//! metrics and logs.
//!
//! The thread sleeps until the machine's next wake-up (the next regular
//! check or the end of a cooldown) or a stop request; nothing polls. Every
//! error is logged, counted and retried at the next check; a panic inside
//! one request is caught and treated as a failed request.

use std::net::Ipv4Addr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, after, never, select};

use super::cloudflare::{CloudflareClient, CloudflareError, DnsRecord};
use super::decide::{Note, Outcome, RecordView, Request, Updater};
use super::detect::Detector;
use super::metrics::WanDnsMetrics;

/// The I/O side: detection providers and the Cloudflare zone.
pub struct Io {
    /// IP providers.
    pub detector: Detector,
    /// Cloudflare client for the zone.
    pub cloudflare: CloudflareClient,
    /// The record's name.
    pub hostname: String,
    /// The zone id (for messages).
    pub zone_id: String,
}

/// Runs until `stop` receives a message or its sender is dropped.
pub fn run(mut machine: Updater, io: Io, metrics: WanDnsMetrics, stop: Receiver<()>) {
    let mut notes = Vec::new();
    loop {
        let mut request = machine.poll(Instant::now(), &mut notes);
        apply(&mut notes, &metrics, &io, &machine);
        // One trace per tick: the detection and the Cloudflare calls it led to.
        let tick = request
            .as_ref()
            .map(|_| tracing::info_span!(parent: None, "wan_dns_tick", hostname = %io.hostname));
        let _tick = tick.as_ref().map(|t| t.enter());
        while let Some(r) = request {
            if stop.try_recv().is_ok() {
                return;
            }
            let span = tracing::info_span!(
                "wan_dns_request",
                otel.name = request_name(&r),
                outcome = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                otel.status_description = tracing::field::Empty,
            );
            let outcome = span.in_scope(|| {
                match catch_unwind(AssertUnwindSafe(|| perform(&io, &r, &metrics))) {
                    Ok(o) => o,
                    Err(_) => {
                        tracing::error!(request = ?r, "wan-dns request panicked; treating it as failed");
                        failed_outcome(&r)
                    }
                }
            });
            span.record("outcome", format!("{outcome:?}"));
            if matches!(outcome, Outcome::Failed | Outcome::DetectionFailed) {
                crate::telemetry::record_error(&span, &format!("{} failed", request_name(&r)));
            }
            request = machine.on_outcome(outcome, Instant::now(), &mut notes);
            apply(&mut notes, &metrics, &io, &machine);
        }
        let timer = match machine.next_wakeup() {
            Some(t) => after(t.saturating_duration_since(Instant::now())),
            None => never(),
        };
        select! {
            recv(stop) -> _ => return,
            recv(timer) -> _ => {}
        }
    }
}

/// Span name of a request (never contains the token or the IP).
fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Detect => "wan_ip detect",
        Request::ReadRecord { .. } => "cloudflare GET record",
        Request::Update { .. } => "cloudflare PATCH record",
        Request::Create { .. } => "cloudflare POST record",
    }
}

fn failed_outcome(r: &Request) -> Outcome {
    match r {
        Request::Detect => Outcome::DetectionFailed,
        _ => Outcome::Failed,
    }
}

/// Performs one request and reduces its result to what the machine needs;
/// errors are logged here, where their details are known.
fn perform(io: &Io, request: &Request, metrics: &WanDnsMetrics) -> Outcome {
    match request {
        Request::Detect => {
            metrics
                .last_check
                .set(crate::wallclock::unix_seconds(SystemTime::now()));
            let found = io.detector.detect(|provider, error| {
                metrics
                    .detection_failures
                    .with_label_values(&[provider])
                    .inc();
                tracing::warn!(provider, error = %error, "WAN IP provider failed; trying the next one");
            });
            match found {
                Some((ip, provider)) => {
                    tracing::debug!(%ip, provider, "WAN IP detected");
                    Outcome::Detected(ip)
                }
                None => {
                    tracing::warn!(
                        providers = io.detector.providers().len(),
                        "every WAN IP provider failed; retrying at the next check"
                    );
                    Outcome::DetectionFailed
                }
            }
        }
        Request::ReadRecord {
            cached_id: Some(id),
        } => match io.cloudflare.get_record(id) {
            Ok(r) => found(r),
            Err(CloudflareError::NotFound(_)) => {
                tracing::info!(record_id = %id, "cached DNS record id is gone; looking the record up by name");
                Outcome::RecordGone
            }
            Err(e) => cf_failed("read DNS record", io, metrics, &e),
        },
        Request::ReadRecord { cached_id: None } => {
            match io.cloudflare.find_a_record(&io.hostname) {
                Ok(Some(r)) => found(r),
                Ok(None) => Outcome::RecordMissing,
                Err(e) => cf_failed("look up DNS record", io, metrics, &e),
            }
        }
        Request::Update { record_id, ip } => match io.cloudflare.set_content(record_id, *ip) {
            Ok(_) => Outcome::Updated,
            Err(CloudflareError::NotFound(_)) => {
                tracing::info!(record_id = %record_id, "DNS record vanished before the update; looking it up again");
                Outcome::RecordGone
            }
            Err(e) => cf_failed("update DNS record", io, metrics, &e),
        },
        Request::Create { ip } => match io.cloudflare.create_a_record(&io.hostname, *ip) {
            Ok(r) => Outcome::Created { id: r.id },
            Err(e) => cf_failed("create DNS record", io, metrics, &e),
        },
    }
}

fn found(r: DnsRecord) -> Outcome {
    Outcome::RecordFound(RecordView {
        id: r.id,
        content: r.content,
    })
}

fn cf_failed(action: &str, io: &Io, metrics: &WanDnsMetrics, e: &CloudflareError) -> Outcome {
    metrics.api_errors.inc();
    if e.is_transient() {
        tracing::warn!(hostname = %io.hostname, zone = %io.zone_id, error = %e, "Cloudflare: cannot {action}; retrying at the next check");
    } else {
        tracing::error!(hostname = %io.hostname, zone = %io.zone_id, error = %e, "Cloudflare: cannot {action}; retrying at the next check");
    }
    Outcome::Failed
}

fn apply(notes: &mut Vec<Note>, metrics: &WanDnsMetrics, io: &Io, machine: &Updater) {
    let now = Instant::now();
    for note in notes.drain(..) {
        match note {
            Note::CheckStarted => tracing::debug!("WAN IP check"),
            Note::IpDetected { ip, previous } => {
                metrics.set_current_ip(ip, previous);
                match previous {
                    Some(old) if old != ip => {
                        metrics.ip_changes.inc();
                        tracing::info!(from = %old, to = %ip, "WAN IP changed");
                    }
                    Some(_) => {}
                    None => tracing::info!(%ip, "WAN IP detected"),
                }
            }
            Note::DetectionFailed | Note::LookupFailed => {}
            Note::Unchanged { ip } => {
                tracing::debug!(hostname = %io.hostname, %ip, "DNS record already up to date");
            }
            Note::Deferred { ip, until } => tracing::info!(
                hostname = %io.hostname,
                %ip,
                cooldown_left_s = until.saturating_duration_since(now).as_secs(),
                "WAN IP differs from the record; update deferred until the cooldown ends"
            ),
            Note::UpdateSucceeded { from, to } => {
                metrics.record_updates.with_label_values(&["success"]).inc();
                match from {
                    Some(from) => {
                        tracing::info!(hostname = %io.hostname, %from, %to, "DNS record updated")
                    }
                    None => tracing::info!(hostname = %io.hostname, %to, "DNS record created"),
                }
            }
            Note::UpdateFailed { ip } => {
                metrics.record_updates.with_label_values(&["fail"]).inc();
                log_failed_update(io, ip);
            }
            Note::RecordMissing { ip } => {
                metrics.record_updates.with_label_values(&["fail"]).inc();
                tracing::error!(
                    hostname = %io.hostname,
                    zone = %io.zone_id,
                    %ip,
                    "no A record with this name in the zone; create it in Cloudflare or set wan_dns.cloudflare.create_if_missing: true"
                );
            }
            Note::CooldownStarted { .. } => metrics.in_cooldown.set(1),
            Note::CooldownEnded => metrics.in_cooldown.set(0),
        }
    }
    metrics.in_cooldown.set(i64::from(machine.in_cooldown(now)));
}

fn log_failed_update(io: &Io, ip: Ipv4Addr) {
    tracing::warn!(hostname = %io.hostname, %ip, "DNS record not updated; retrying at the next check");
}
