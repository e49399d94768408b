# oracle-watchdog agent image: the prebuilt static musl binary on scratch.
# (The staged binary is already mode 0755; COPY keeps it.)
#
# Nothing is downloaded while building: `make static` builds the binaries
# and `make docker` stages the one for the local architecture as
# dist/docker/<arch>/oracle-watchdog, the only file in the build context
# (.dockerignore). TLS roots are compiled into the binary, so scratch needs
# no CA bundle. `make push` builds linux/amd64 and linux/arm64 with buildx,
# which sets TARGETARCH per platform.
FROM scratch

ARG TARGETARCH=amd64
ARG VERSION=unknown

LABEL org.opencontainers.image.title="oracle-watchdog" \
      org.opencontainers.image.description="Keeps Oracle Cloud free-tier instances alive (agent mode)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/afreidah/oracle-watchdog"

COPY --chown=0:0 dist/docker/${TARGETARCH}/oracle-watchdog /oracle-watchdog

# No passwd file in scratch: a numeric, unprivileged user and group.
USER 65532:65532

# Agent metrics and /healthz.
EXPOSE 9105

# scratch has no shell or curl: the binary checks its own /healthz
# (127.0.0.1:9105; pass -metrics-address to healthcheck when you move it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/oracle-watchdog", "healthcheck"]

ENTRYPOINT ["/oracle-watchdog"]
CMD ["-mode", "agent", "-config", "/etc/oracle-watchdog/config.yaml"]
