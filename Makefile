# SignLab: the two commands of the README.
#   make demo  installs what is missing, starts the ecosystem and runs the main flow (QES, PAdES)
#   make test  installs what is missing, runs the static checks (make lint) and the whole test suite,
#              including the Docker stage
# Both install Debian packages (apt-get, only when missing) and a virtual environment in .venv.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.signlab-installed
DEB_PACKAGES := softhsm2 poppler-utils libnss3-tools chromium
# The Docker stage of make test (tests/compose/test_real_engine.py): an engine when none answers
# (docker.io: dockerd, which the stage starts and stops itself), debootstrap for the base image
# without Docker Hub, and a compose CLI when the docker CLI has no compose plugin.
ENGINE_PACKAGES := docker.io debootstrap
COMPOSE_PACKAGE := docker-compose

.PHONY: demo test lint diagrams system-packages engine-packages lab-hosts venv down

demo: system-packages $(STAMP)
	@$(VENV)/bin/signlab status >/dev/null 2>&1 || $(VENV)/bin/signlab up --fault-injection
	$(VENV)/bin/signlab scenario run qes-pades-b-b --html var/scenario-report.html

# Regenerate the sequence diagrams of docs/flows.md from real runs (a temporary ecosystem).
diagrams: $(STAMP)
	$(VENV)/bin/signlab docs diagrams

# Three pytest processes at once, so the two cores stay busy: the Docker stage (tests/compose: its
# own engine, base image and stack; mostly waiting on dpkg, image builds and containers), the CLI
# stage (tests/signlab: real runtimes started and stopped, the bench) and the rest of the suite.
# Each has its own session (SoftHSM token, temporary folders) and its own range of test ports
# (SIGNLAB_TEST_PORTS, shared/testing); the two side stages' logs are
# in var/ and printed when all are done; any failing fails make test. Alone: pytest tests/<dir>.
test: system-packages engine-packages $(STAMP) lab-hosts lint
	@mkdir -p var; \
	SIGNLAB_TEST_PORTS=30000-32000 $(VENV)/bin/python -m pytest tests/compose -p no:cacheprovider \
	  > var/docker-stage.log 2>&1 & docker=$$!; \
	SIGNLAB_TEST_PORTS=26000-29999 $(VENV)/bin/python -m pytest tests/signlab -p no:cacheprovider \
	  > var/cli-stage.log 2>&1 & cli=$$!; \
	SIGNLAB_TEST_PORTS=20000-25999 $(VENV)/bin/python -m pytest --ignore=tests/compose --ignore=tests/signlab \
	  --durations=15; suite=$$?; \
	wait $$cli; cli_status=$$?; wait $$docker; docker_status=$$?; \
	echo; echo "==== the CLI stage (tests/signlab), run alongside: var/cli-stage.log ===="; cat var/cli-stage.log; \
	echo; echo "==== the Docker stage (tests/compose), run alongside: var/docker-stage.log ===="; cat var/docker-stage.log; \
	echo "suite exit $$suite, CLI stage exit $$cli_status, Docker stage exit $$docker_status"; \
	[ $$suite -eq 0 ] && [ $$cli_status -eq 0 ] && [ $$docker_status -eq 0 ]

# The static checks (docs/development.md), all three run and any finding fails: ruff with the rule
# set of pyproject.toml, mypy over the source packages, import-linter's layer contracts.
lint: $(STAMP)
	@status=0; \
	echo "ruff check ."; $(VENV)/bin/ruff check . || status=1; \
	echo "mypy"; $(VENV)/bin/mypy || status=1; \
	echo "lint-imports"; $(VENV)/bin/lint-imports --no-cache || status=1; \
	exit $$status

down: $(STAMP)
	$(VENV)/bin/signlab down

venv: $(STAMP)

# Install the Debian packages that are missing (and only those), after apt-get update.
system-packages:
	@missing=""; \
	for package in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# What the Docker stage needs, installed only when missing and only as root (or with password-less
# sudo); otherwise the stage's tests skip and say why.
engine-packages:
	@wanted=""; \
	if [ -z "$$DOCKER_HOST" ] && [ ! -S /var/run/docker.sock ]; then wanted="$(ENGINE_PACKAGES)"; fi; \
	if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then \
	  wanted="$$wanted $(COMPOSE_PACKAGE)"; \
	fi; \
	missing=""; \
	for package in $$wanted; do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo -n"; \
	  echo "Installing Debian packages for the Docker stage:$$missing"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing \
	  || echo "Could not install$$missing (not root, no password-less sudo): the Docker stage will skip."; \
	fi

# The lab host name in SignLab's certificates resolves to 127.0.0.1 (signlab hosts), so a stock
# validator on this machine can fetch their revocation data (the pdfsig tests).
lab-hosts: $(STAMP)
	@$(VENV)/bin/signlab hosts --check >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -eq 0 ]; then $(VENV)/bin/signlab hosts; \
	  elif sudo -n true 2>/dev/null; then sudo -n $(VENV)/bin/signlab hosts; \
	  else echo "Not root: the stock-validator tests will skip (run 'sudo $(VENV)/bin/signlab hosts')."; fi; }

# The virtual environment with the project and its dev extras; rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)
