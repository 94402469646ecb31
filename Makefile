# SignLab: the two commands of the README.
#   make demo  installs what is missing, starts the ecosystem and runs the main flow (QES, PAdES)
#   make test  installs what is missing and runs the whole test suite
# Both install Debian packages (apt-get, only when missing) and a virtual environment in .venv.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.signlab-installed
DEB_PACKAGES := softhsm2 poppler-utils libnss3-tools chromium

.PHONY: demo test diagrams system-packages venv down

demo: system-packages $(STAMP)
	@$(VENV)/bin/signlab status >/dev/null 2>&1 || $(VENV)/bin/signlab up --fault-injection
	$(VENV)/bin/signlab scenario run qes-pades-b-b --html var/scenario-report.html

# Regenerate the sequence diagrams of docs/flows.md from real runs (a temporary ecosystem).
diagrams: $(STAMP)
	$(VENV)/bin/signlab docs diagrams

test: system-packages $(STAMP)
	$(VENV)/bin/python -m pytest

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

# The virtual environment with the project and its dev extras; rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)
