//! Unit tests of the agent core in virtual time.

use std::time::{Duration, Instant};

use super::*;

fn core() -> AgentCore {
    let mut s = CoreSettings::new("test:1");
    s.timeout = Duration::from_secs(300);
    AgentCore::new(
        s,
        [NodeSpec {
            name: "n1".into(),
            instance_id: "ocid1.instance.oc1.iad.n1".into(),
            consul_node: None,
        }],
    )
}

fn view_missing(record_index: Option<u64>) -> ConsulView {
    let mut v = ConsulView {
        leader_session: Some("s-me".into()),
        ..ConsulView::default()
    };
    if let Some(i) = record_index {
        v.records.insert(
            "n1".into(),
            StoredRecord {
                record: None,
                modify_index: i,
            },
        );
    }
    v
}

fn stops(cmds: &[Command]) -> usize {
    cmds.iter()
        .filter(|c| matches!(c, Command::Stop { .. }))
        .count()
}

fn reply(cycle: CycleId, reply: Reply) -> Input {
    Input::Reply {
        node: "n1".into(),
        cycle,
        reply,
    }
}

/// Drives one node from "missing" to the evidence read; returns the cycle.
fn to_evidence(c: &mut AgentCore, t0: Instant) -> (CycleId, Instant) {
    c.handle(
        Input::LeaderAcquired {
            session: "s-me".into(),
        },
        t0,
    );
    c.handle(Input::View(view_missing(None)), t0);
    // Keep the lock fresh while the timeout runs out.
    let mut t = t0;
    let mut cmds = Vec::new();
    while t < t0 + Duration::from_secs(301) {
        t += Duration::from_secs(5);
        cmds = c.handle(Input::LeaderRenewed, t);
        cmds.extend(c.handle(Input::Tick, t));
        if cmds
            .iter()
            .any(|c| matches!(c, Command::WriteRecord { cas: 0, .. }))
        {
            break;
        }
        // Answer the START-cheap probes: the instance is RUNNING.
        for cmd in &cmds {
            if let Command::ReadInstance { cycle, .. } = cmd {
                c.handle(
                    reply(*cycle, Reply::Instance(Ok(LifecycleState::Running))),
                    t,
                );
            }
        }
    }
    let id = cmds
        .iter()
        .find_map(|c| match c {
            Command::WriteRecord { cycle, cas: 0, .. } => Some(*cycle),
            _ => None,
        })
        .expect("a cycle claims the record once the timeout has passed");
    let cmds = c.handle(reply(id, Reply::RecordWritten(Ok(Some(42)))), t);
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::ReadInstance { .. }))
    );
    let cmds = c.handle(reply(id, Reply::Instance(Ok(LifecycleState::Running))), t);
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::ReadEvidence { .. })),
        "a RUNNING instance leads to the evidence read, not to STOP"
    );
    assert_eq!(stops(&cmds), 0);
    (id, t)
}

#[test]
fn stop_needs_the_evidence_and_a_duplicate_reply_sends_nothing_more() {
    let t0 = Instant::now();
    let mut c = core();
    let (id, t) = to_evidence(&mut c, t0);
    let ev = Evidence {
        view: view_missing(Some(42)),
        serf: None,
    };
    let cmds = c.handle(reply(id, Reply::Evidence(Ok(ev.clone()))), t);
    assert_eq!(stops(&cmds), 1, "complete evidence lets one STOP through");
    let again = c.handle(reply(id, Reply::Evidence(Ok(ev))), t);
    assert_eq!(
        stops(&again),
        0,
        "a repeated evidence reply sends no second STOP"
    );
}

#[test]
fn evidence_with_the_heartbeat_back_cancels_the_cycle_without_stop() {
    let t0 = Instant::now();
    let mut c = core();
    let (id, t) = to_evidence(&mut c, t0);
    let mut view = view_missing(Some(42));
    view.heartbeats.insert("n1".into());
    let cmds = c.handle(
        reply(id, Reply::Evidence(Ok(Evidence { view, serf: None }))),
        t,
    );
    assert_eq!(stops(&cmds), 0);
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::DeleteRecord { cas: 42, .. })),
        "the cancelled cycle releases its record"
    );
}

#[test]
fn a_filtered_listing_makes_nobody_missing() {
    let t0 = Instant::now();
    let mut c = core();
    c.handle(
        Input::LeaderAcquired {
            session: "s-me".into(),
        },
        t0,
    );
    let mut v = view_missing(None);
    v.filtered_by_acls = true;
    let mut t = t0;
    for _ in 0..200 {
        t += Duration::from_secs(5);
        c.handle(Input::LeaderRenewed, t);
        let cmds = c.handle(Input::View(v.clone()), t);
        assert!(
            !cmds
                .iter()
                .any(|c| matches!(c, Command::WriteRecord { .. } | Command::Stop { .. })),
            "no cycle starts on a filtered listing"
        );
    }
    assert_eq!(c.missing_count(), 0);
}
