//! The WAN-IP DDNS updater under faults: Cloudflare 401/429/5xx/
//! `success:false`, IP providers answering HTML, IPv6, nothing, or hanging.
//! The first check (at start) meets the fault; the next one (30 s later,
//! the shortest poll interval allowed) must fix the record. The agent's
//! main job runs alongside and must not notice.

use std::net::SocketAddr;
use std::time::Duration;

use watchdog_standins::cloudflare::{CfFault, CloudflareStandin};
use watchdog_standins::ipprovider::{IpFault, IpProvider};

use crate::Env;
use crate::ensure;
use crate::harness::{Context, Daemon, Outcome, SEC, wait_until};
use crate::world::{AgentCfg, World, WorldOpts};

const TOKEN_VAR: &str = "OW_CHAOS_CF_TOKEN";
const ZONE: &str = "0c5a6e0f4c1b4d3e9a7806061c88ada1";
const HOST: &str = "home.chaos.example";
const OLD_IP: &str = "198.51.100.1";
const NEW_IP: &str = "203.0.113.77";
const UPDATES_OK: &str = "oracle_watchdog_cloudflare_record_updates_total{result=\"success\"}";

struct Setup {
    w: World,
    cf: CloudflareStandin,
    record: String,
    token: String,
}

fn setup(env: &Env) -> Result<Setup, String> {
    let mut w = World::new(&env.bin, &env.book, WorldOpts::default())?;
    w.start_monitor("n1")?;
    w.start_monitor("n2")?;
    let token = format!("chaos-cf-{:016x}", fastrand::u64(..));
    let cf = CloudflareStandin::start(&token).ctx("start Cloudflare stand-in")?;
    cf.add_zone(ZONE);
    let record = cf.add_record(ZONE, "A", HOST, OLD_IP, 300, false);
    Ok(Setup {
        w,
        cf,
        record,
        token,
    })
}

impl Setup {
    fn agent(&self, provider: &str) -> Result<Daemon, String> {
        let extra = format!(
            "wan_dns:\n  enabled: true\n  hostname: {HOST}\n  cloudflare:\n    api_token_env: {TOKEN_VAR}\n    zone_id: \"{ZONE}\"\n    api_url: \"{}\"\n  detection_providers: [\"{provider}\"]\n  poll_interval: 30s\n  cooldown: 1m\n",
            self.cf.api_url()
        );
        let cfg = self.w.agent_config(&AgentCfg {
            extra,
            ..AgentCfg::default()
        })?;
        self.w
            .agent_with("agent", &cfg, &[], &[(TOKEN_VAR, self.token.as_str())])
    }

    fn content(&self) -> Option<String> {
        self.cf.record(&self.record).map(|r| r.content)
    }

    /// The record gets fixed by a later check, and nothing else happened.
    fn recovers(&mut self, a: &mut Daemon) -> Outcome {
        ensure!(
            wait_until(50 * SEC, || self.content().as_deref() == Some(NEW_IP)),
            "record not updated once the fault cleared (content {:?})",
            self.content()
        );
        ensure!(
            wait_until(5 * SEC, || a.metric(UPDATES_OK) == Some(1.0)),
            "success not counted ({})",
            a.val(UPDATES_OK)
        );
        let patches = self.cf.successful_patches().len();
        ensure!(patches == 1, "{patches} successful PATCHes, expected 1");
        let m = a.scrape().ctx("agent metrics")?;
        ensure!(
            m.contains(&format!(
                "oracle_watchdog_wan_ip_current{{ip=\"{NEW_IP}\"}} 1"
            )),
            "wan_ip_current does not show {NEW_IP}"
        );
        ensure!(
            !self.w.book.dump().contains(&self.token) && !m.contains(&self.token),
            "the Cloudflare token leaked into logs or metrics"
        );
        ensure!(
            a.metric("oracle_watchdog_agent_nodes_missing") == Some(0.0),
            "the agent's main job was disturbed"
        );
        self.w.no_posts()?;
        self.w.finish(&mut [a])
    }
}

/// Cloudflare fails the first check's record lookup with `fault`: logged
/// with the reason, the record left alone, no hammering, and the next
/// check updates the record. (Like the Go original, only failed record
/// *updates* count in `..._record_updates_total{result="fail"}`, so a
/// failed lookup shows in the log, not in that counter.)
fn cloudflare(env: &Env, fault: CfFault, logged: &str) -> Outcome {
    let mut s = setup(env)?;
    let ip = IpProvider::start(NEW_IP).ctx("start IP provider")?;
    s.cf.fail_next(1, fault);
    let mut a = s.agent(&ip.plain_url())?;
    ensure!(
        wait_until(20 * SEC, || a
            .logged("Cloudflare: cannot look up DNS record")),
        "the Cloudflare failure was not logged"
    );
    ensure!(a.logged(logged), "the log does not say {logged:?}");
    ensure!(
        s.content().as_deref() == Some(OLD_IP),
        "record changed although Cloudflare failed"
    );
    let m = a.scrape().ctx("agent metrics")?;
    ensure!(
        m.contains(&format!(
            "oracle_watchdog_wan_ip_current{{ip=\"{NEW_IP}\"}} 1"
        )),
        "detected IP not shown while Cloudflare fails"
    );
    ensure!(
        a.metric(UPDATES_OK) == Some(0.0)
            && a.metric("oracle_watchdog_wan_dns_in_cooldown") == Some(0.0),
        "success or cooldown reported although nothing was updated"
    );
    std::thread::sleep(3 * SEC);
    let during = s.cf.requests().len();
    ensure!(
        during <= 3,
        "Cloudflare hammered: {during} requests right after a failure"
    );
    a.ensure_alive("agent")?;
    s.recovers(&mut a)
}

/// 401 (token revoked, then restored).
pub fn cf_unauthorized(env: &Env) -> Outcome {
    cloudflare(env, CfFault::Status(401), "HTTP 401")
}

/// 429 with Retry-After.
pub fn cf_rate_limited(env: &Env) -> Outcome {
    cloudflare(env, CfFault::RateLimited { retry_after: 20 }, "HTTP 429")
}

/// 502 from Cloudflare's edge.
pub fn cf_server_error(env: &Env) -> Outcome {
    cloudflare(env, CfFault::Status(502), "HTTP 502")
}

/// 200 with `"success": false`.
pub fn cf_unsuccessful(env: &Env) -> Outcome {
    cloudflare(
        env,
        CfFault::Unsuccessful {
            code: 1004,
            message: "DNS Validation Error".into(),
        },
        "code 1004",
    )
}

/// The only provider gives a wrong answer, then a right one.
fn provider(env: &Env, fault: IpFault) -> Outcome {
    let mut s = setup(env)?;
    let ip = IpProvider::start_with(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        NEW_IP,
        Duration::from_secs(25),
    )
    .ctx("start IP provider")?;
    ip.set_fault(fault);
    let url = ip.plain_url();
    let failures = format!("oracle_watchdog_wan_ip_detection_failures_total{{provider=\"{url}\"}}");
    let mut a = s.agent(&url)?;
    ensure!(
        wait_until(25 * SEC, || a.val(&failures) >= 1.0),
        "the bad provider answer was not counted ({})",
        a.val(&failures)
    );
    ensure!(
        s.cf.requests_with_method("PATCH").is_empty(),
        "PATCHed the record from a bad provider answer"
    );
    let m = a.scrape().ctx("agent metrics")?;
    ensure!(
        !m.contains("oracle_watchdog_wan_ip_current{"),
        "a WAN IP is reported although none was detected"
    );
    ensure!(
        a.metric("oracle_watchdog_agent_nodes_missing") == Some(0.0),
        "agent metrics wrong while the provider misbehaves"
    );
    ip.set_ip(NEW_IP);
    s.recovers(&mut a)
}

/// A captive-portal HTML page.
pub fn ip_html(env: &Env) -> Outcome {
    provider(env, IpFault::Html)
}

/// An IPv6 address.
pub fn ip_ipv6(env: &Env) -> Outcome {
    provider(env, IpFault::Ipv6)
}

/// An empty 200.
pub fn ip_empty(env: &Env) -> Outcome {
    provider(env, IpFault::Empty)
}

/// No answer at all.
pub fn ip_hanging(env: &Env) -> Outcome {
    provider(env, IpFault::Hang)
}
