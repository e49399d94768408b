//! The STOP interlock: the one place that decides whether a STOP may be
//! sent. It is the agent's safety contract written as code; README
//! ("When oracle-watchdog powers off an instance") states the same rules.
//!
//! A STOP needs fresh, positive evidence: a consistent Consul read taken
//! after the cycle's last OCI call. Anything missing or unknown refuses.

use std::time::{Duration, Instant};

use super::io::{Evidence, Refusal, SerfHealth};

/// Everything the interlock looks at besides the evidence itself, taken
/// from the core's own state at the moment the evidence arrived.
#[derive(Debug, Clone)]
pub struct StopContext<'a> {
    /// Node name (heartbeat and maintenance keys, record key).
    pub node: &'a str,
    /// True when the node is configured as a Consul member (serfHealth
    /// must then be read and not passing).
    pub consul_member: bool,
    /// The core is acting: not dry run, not shutting down.
    pub acting: bool,
    /// This agent's leader session, if it holds the lock and renewed it
    /// within the safe window.
    pub leader_session: Option<&'a str>,
    /// Since when this agent has seen the node missing without a break
    /// (restarted on leadership, Consul reconnect, maintenance cleared,
    /// end of the last cycle). `None`: not missing as far as it knows.
    pub missing_since: Option<Instant>,
    /// `timeout` from the config.
    pub timeout: Duration,
    /// The modify index of the record this cycle holds.
    pub record_index: Option<u64>,
    /// The mass-outage guard is engaged.
    pub guard: bool,
    /// Now.
    pub now: Instant,
}

/// Decides whether a STOP may be sent now. `Ok` only when every condition
/// of the safety contract holds; otherwise the first failing condition.
pub fn check_stop(ctx: &StopContext<'_>, evidence: &Evidence) -> Result<(), Refusal> {
    if !ctx.acting {
        return Err(Refusal::NotActing);
    }
    let view = &evidence.view;
    // A filtered listing proves nothing by absence. Our own leader record
    // must be visible too: a token that cannot read it cannot be trusted
    // to see heartbeats either.
    if view.filtered_by_acls || view.leader_session.is_none() {
        return Err(Refusal::ListingIncomplete);
    }
    let Some(mine) = ctx.leader_session else {
        return Err(Refusal::NotLeader);
    };
    if view.leader_session.as_deref() != Some(mine) {
        return Err(Refusal::NotLeader);
    }
    if view.heartbeats.contains(ctx.node) {
        return Err(Refusal::HeartbeatPresent);
    }
    if view.maintenance.contains(ctx.node) {
        return Err(Refusal::Maintenance);
    }
    match (ctx.record_index, view.records.get(ctx.node)) {
        (Some(ours), Some(stored)) if stored.modify_index == ours => {}
        _ => return Err(Refusal::RecordNotHeld),
    }
    match ctx.missing_since {
        Some(since) if ctx.now.saturating_duration_since(since) >= ctx.timeout => {}
        _ => return Err(Refusal::NotMissingLongEnough),
    }
    if ctx.guard {
        return Err(Refusal::Guard);
    }
    if ctx.consul_member {
        match evidence.serf {
            Some(SerfHealth::NotPassing) => {}
            Some(SerfHealth::Passing) => return Err(Refusal::SerfPassing),
            None => return Err(Refusal::EvidenceUnavailable),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::core::io::{ConsulView, StoredRecord};

    fn evidence() -> Evidence {
        let mut view = ConsulView {
            leader_session: Some("s-me".into()),
            ..ConsulView::default()
        };
        view.records.insert(
            "n1".into(),
            StoredRecord {
                record: None,
                modify_index: 7,
            },
        );
        Evidence { view, serf: None }
    }

    fn ctx(now: Instant) -> StopContext<'static> {
        StopContext {
            node: "n1",
            consul_member: false,
            acting: true,
            leader_session: Some("s-me"),
            missing_since: Some(now - Duration::from_secs(301)),
            timeout: Duration::from_secs(300),
            record_index: Some(7),
            guard: false,
            now,
        }
    }

    #[test]
    fn all_evidence_present_allows_stop() {
        let now = Instant::now();
        assert_eq!(check_stop(&ctx(now), &evidence()), Ok(()));
    }

    #[test]
    #[allow(
        clippy::type_complexity,
        reason = "a table of spoilers reads best inline"
    )]
    fn each_missing_condition_refuses_with_its_own_reason() {
        let now = Instant::now();
        let cases: Vec<(Refusal, Box<dyn Fn(&mut StopContext, &mut Evidence)>)> = vec![
            (Refusal::NotActing, Box::new(|c, _| c.acting = false)),
            (
                Refusal::ListingIncomplete,
                Box::new(|_, e| e.view.filtered_by_acls = true),
            ),
            (
                Refusal::ListingIncomplete,
                Box::new(|_, e| e.view.leader_session = None),
            ),
            (Refusal::NotLeader, Box::new(|c, _| c.leader_session = None)),
            (
                Refusal::NotLeader,
                Box::new(|_, e| e.view.leader_session = Some("s-other".into())),
            ),
            (
                Refusal::HeartbeatPresent,
                Box::new(|_, e| {
                    e.view.heartbeats.insert("n1".into());
                }),
            ),
            (
                Refusal::Maintenance,
                Box::new(|_, e| {
                    e.view.maintenance.insert("n1".into());
                }),
            ),
            (
                Refusal::RecordNotHeld,
                Box::new(|_, e| {
                    e.view.records.clear();
                }),
            ),
            (
                Refusal::RecordNotHeld,
                Box::new(|c, _| c.record_index = Some(8)),
            ),
            (
                Refusal::NotMissingLongEnough,
                Box::new(move |c, _| c.missing_since = Some(now - Duration::from_secs(299))),
            ),
            (
                Refusal::NotMissingLongEnough,
                Box::new(|c, _| c.missing_since = None),
            ),
            (Refusal::Guard, Box::new(|c, _| c.guard = true)),
            (
                Refusal::EvidenceUnavailable,
                Box::new(|c, _| c.consul_member = true),
            ),
            (
                Refusal::SerfPassing,
                Box::new(|c, e| {
                    c.consul_member = true;
                    e.serf = Some(SerfHealth::Passing);
                }),
            ),
        ];
        for (want, spoil) in cases {
            let mut c = ctx(now);
            let mut e = evidence();
            spoil(&mut c, &mut e);
            assert_eq!(check_stop(&c, &e), Err(want), "{want:?}");
        }
        let mut c = ctx(now);
        c.consul_member = true;
        let mut e = evidence();
        e.serf = Some(SerfHealth::NotPassing);
        assert_eq!(check_stop(&c, &e), Ok(()), "serf critical is no objection");
    }
}
