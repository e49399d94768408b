//! The scenario list: every named fault the suite runs, longest first so
//! two workers finish at about the same time.

mod agent;
mod consul;
mod oci;
mod process;
mod wandns;
mod wireguard;

use crate::Scenario;

macro_rules! scenarios {
    ($($name:literal => $f:path),+ $(,)?) => {
        vec![$(Scenario { name: $name, run: $f }),+]
    };
}

/// Every scenario, in run order.
pub fn all() -> Vec<Scenario> {
    scenarios![
        "oci_hanging" => oci::hanging,
        "ip_provider_hanging" => wandns::ip_hanging,
        "ip_provider_html" => wandns::ip_html,
        "ip_provider_ipv6" => wandns::ip_ipv6,
        "ip_provider_empty" => wandns::ip_empty,
        "cloudflare_401" => wandns::cf_unauthorized,
        "cloudflare_429_retry_after" => wandns::cf_rate_limited,
        "cloudflare_5xx" => wandns::cf_server_error,
        "cloudflare_success_false" => wandns::cf_unsuccessful,
        "consul_refusing" => consul::refusing,
        "consul_hanging" => consul::hanging,
        "consul_no_leader_500" => consul::no_leader,
        "consul_acl_403" => consul::acl_denied,
        "consul_slow" => consul::slow,
        "consul_wiped" => consul::wiped,
        "consul_session_invalidated" => consul::session_invalidated,
        "consul_key_taken_by_other_session" => consul::key_taken,
        "consul_flapping" => consul::flapping,
        "oci_401_unauthorized" => oci::unauthorized,
        "oci_404_not_found" => oci::not_found,
        "oci_409_conflict_on_stop" => oci::conflict,
        "oci_429_retry_after" => oci::throttled,
        "oci_out_of_capacity_on_start" => oci::out_of_capacity,
        "oci_stuck_stopping" => oci::stuck_stopping,
        "oci_terminated" => oci::terminated,
        "agent_killed_in_inspect" => agent::killed_in_inspect,
        "agent_killed_in_stopping" => agent::killed_in_stopping,
        "agent_killed_in_wait_stopped" => agent::killed_in_wait_stopped,
        "agent_killed_in_starting" => agent::killed_in_starting,
        "agent_killed_in_wait_running" => agent::killed_in_wait_running,
        "two_agents_at_once" => agent::two_agents,
        "clock_jump_forward_1h" => agent::clock_forward,
        "clock_jump_backward_1h" => agent::clock_backward,
        "heartbeat_started_at_skewed" => agent::skewed_started_at,
        "wg_interface_missing" => wireguard::interface_missing,
        "wg_peer_missing" => wireguard::peer_missing,
        "wg_dns_failing" => wireguard::dns_failing,
        "metrics_port_taken" => process::metrics_port_taken,
        "config_unreadable" => process::config_unreadable,
    ]
}
