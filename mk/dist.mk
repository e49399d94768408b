# Distribution targets (included from the Makefile): Debian packages, the
# scratch container image, the multi-arch push and the distribution tests.
# Uses VERSION, DIST and the `static` target from the Makefile.

IMAGE ?= oracle-watchdog
PLATFORMS ?= linux/amd64,linux/arm64
DEB_ARCHS := amd64 arm64
# Shell snippet: the static binary for Debian arch $$a, in $$bin.
DEB_BIN = case $$a in arm64) bin=$(DIST)/oracle-watchdog-$(VERSION)-linux-aarch64;; \
	  *) bin=$(DIST)/oracle-watchdog-$(VERSION)-linux-x86_64;; esac
LOCAL_ARCH := $(shell dpkg --print-architecture 2>/dev/null || uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/')
# What test-dist needs from Debian: packaging and lint tools, systemd for
# systemd-analyze, promtool (prometheus), qemu for the aarch64 binary,
# userspace WireGuard for a scrape of the re-resolver. Docker is optional:
# the image test skips without an engine.
DIST_APT := dpkg-dev lintian adduser systemd prometheus qemu-user-static file python3 curl wireguard-go wireguard-tools iproute2

.PHONY: deb docker docker-context push test-dist

## deb: amd64 and arm64 .deb packages in dist/ (from debian/ and the static binaries)
deb: static
	@scripts/ensure.sh apt dpkg-dev
	@for a in $(DEB_ARCHS); do \
	  $(DEB_BIN); deb=$$(scripts/build-deb.sh $$a $$bin $(DIST)) || exit 1; \
	  printf '%-48s %8d bytes\n' $$deb $$(stat -c %s $$deb); \
	done

# Stages the static binaries as dist/docker/<debian arch>/oracle-watchdog,
# the only files in the image build context.
docker-context: static
	@for a in $(DEB_ARCHS); do \
	  $(DEB_BIN); mkdir -p $(DIST)/docker/$$a && cp $$bin $(DIST)/docker/$$a/oracle-watchdog || exit 1; \
	done

## docker: scratch image $(IMAGE):$(VERSION) for the local architecture (offline)
docker: docker-context
	docker build --build-arg TARGETARCH=$(LOCAL_ARCH) --build-arg VERSION=$(VERSION) \
	  -t $(IMAGE):$(VERSION) -t $(IMAGE):latest .
	@docker image inspect -f '{{.RepoTags}} {{.Architecture}} {{.Size}} bytes' $(IMAGE):$(VERSION)

## push: multi-arch image to a registry: make push IMAGE=registry.example.com/you/oracle-watchdog
# Needs docker buildx (with QEMU binfmt not required: nothing runs at build
# time, the Dockerfile only copies the per-arch binary chosen by TARGETARCH).
push: docker-context
	@if [ "$(IMAGE)" = oracle-watchdog ]; then \
	  echo "push: set IMAGE to a registry path, e.g. make push IMAGE=ghcr.io/you/oracle-watchdog" >&2; exit 2; fi
	@docker buildx version >/dev/null 2>&1 || { \
	  echo "push: needs docker buildx (Debian: docker-buildx; or Docker's buildx plugin)" >&2; exit 2; }
	docker buildx build --platform $(PLATFORMS) --build-arg VERSION=$(VERSION) \
	  -t $(IMAGE):$(VERSION) -t $(IMAGE):latest --push .

## test-dist: checks of the static binaries, .debs, unit, image, alert rules and dashboard (minutes)
test-dist: deb docker-context
	@scripts/ensure.sh apt $(DIST_APT)
	$(CARGO) build -p watchdog-standins --bin watchdog-standins
	@scripts/test-dist.sh
