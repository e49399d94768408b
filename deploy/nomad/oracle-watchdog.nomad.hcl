# oracle-watchdog agent as a Nomad service job: two instances of the scratch
# image on different hosts. Both watch the heartbeats; the one holding the
# leader lock in Consul restarts instances, the other takes over within a
# lock TTL if it dies.
#
# Secrets live in a Nomad variable (Nomad 1.4+), readable by this job only:
#   nomad var put nomad/jobs/oracle-watchdog \
#     oci_api_key=@oci_api_key.pem user=ocid1.user.oc1..x tenancy=ocid1.tenancy.oc1..x \
#     fingerprint=aa:bb:... region=us-ashburn-1 consul_token=...
# then: nomad job run -var image=registry.example.com/you/oracle-watchdog:0.1.0 oracle-watchdog.nomad.hcl

variable "image" {
  type        = string
  description = "The oracle-watchdog image (make push IMAGE=...)."
  default     = "oracle-watchdog:latest"
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

job "oracle-watchdog" {
  type        = "service"
  datacenters = var.datacenters

  group "agent" {
    # Active + standby; leadership is decided through Consul, not Nomad.
    count = 2

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "metrics" {
        to = 9105
      }
    }

    service {
      name     = "oracle-watchdog-agent"
      provider = "consul"
      port     = "metrics"
      tags     = ["prometheus"]

      check {
        name     = "healthz"
        type     = "http"
        path     = "/healthz"
        interval = "15s"
        timeout  = "3s"
      }
    }

    restart {
      attempts = 10
      interval = "30m"
      delay    = "15s"
      mode     = "delay"
    }

    task "agent" {
      driver = "docker"

      config {
        image           = var.image
        ports           = ["metrics"]
        args            = ["-mode", "agent", "-config", "/local/config.yaml"]
        readonly_rootfs = true
      }

      # Running cycles get agent.shutdown_grace (30s) to finish on SIGTERM;
      # whatever is left is resumed by the standby from Consul KV.
      kill_timeout = "35s"

      # The Consul agent of the host this task runs on.
      env {
        CONSUL_HTTP_ADDR = "${attr.unique.network.ip-address}:8500"
      }

      template {
        destination = "secrets/consul.env"
        env         = true
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/oracle-watchdog" }}CONSUL_HTTP_TOKEN={{ .consul_token }}{{ end }}
        EOT
      }

      template {
        destination = "local/config.yaml"
        change_mode = "restart"
        data        = <<-EOT
          timeout: 5m
          check_interval: 30s
          max_restart_attempts: 5
          oci:
            config_path: /secrets/oci-config
            profile: DEFAULT
          agent:
            leader_ttl: 15s
            shutdown_grace: 30s
          nodes:
            - name: oraclenode1
              instance_id: "ocid1.instance.oc1.iad.xxx"
              compartment_id: "ocid1.compartment.oc1..xxx"
            - name: oraclenode2
              instance_id: "ocid1.instance.oc1.phx.xxx"
              compartment_id: "ocid1.compartment.oc1..xxx"
        EOT
      }

      # The image runs as 65532:65532: the secrets must be readable by it
      # and by nobody else.
      template {
        destination = "secrets/oci-config"
        perms       = "0600"
        uid         = 65532
        gid         = 65532
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/oracle-watchdog" }}[DEFAULT]
          user={{ .user }}
          fingerprint={{ .fingerprint }}
          tenancy={{ .tenancy }}
          region={{ .region }}
          key_file=/secrets/oci_api_key.pem
          {{ end }}
        EOT
      }

      template {
        destination = "secrets/oci_api_key.pem"
        perms       = "0600"
        uid         = 65532
        gid         = 65532
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/oracle-watchdog" }}{{ .oci_api_key }}{{ end }}
        EOT
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
