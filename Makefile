# paylab: the two set-up commands of README.md.
#   make demo   -- set up everything, then run the main job (the nightly campaign on the built-in simulated rig)
#   make test   -- set up everything, then lint and run the whole test suite
# Both create .venv and install what they need. Missing system packages are installed with apt
# when running as root; otherwise the run stops with one line naming the packages to install.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.paylab-installed
ALLURE := tools/allure/node_modules/.bin/allure
PYTEST_ARGS ?=

# "command that must succeed|Debian package that provides it", one per line.
SYSTEM_DEPS := \
	"$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))'|python3" \
	"$(PYTHON) -c 'import ensurepip; ensurepip.version()'|python3-venv" \
	"command -v gcc|gcc" \
	"command -v initdb || ls /usr/lib/postgresql/*/bin/initdb|postgresql" \
	"$(PYTHON) -c 'import sysconfig,os,sys; sys.exit(not os.path.exists(sysconfig.get_paths()[\"include\"]+\"/Python.h\"))'|python3-dev" \
	"command -v pcscd || test -x /usr/sbin/pcscd|pcscd" \
	"ls /usr/lib/pcsc/drivers/serial/libifdvpcd.so|vsmartcard-vpcd" \
	"test -f /usr/include/PCSC/winscard.h|libpcsclite-dev" \
	"command -v pcsc_scan|pcsc-tools" \
	"command -v opensc-tool|opensc" \
	"test -x /usr/sbin/sshd|openssh-server" \
	"ls /usr/lib/*/libusb-1.0.so.0 /lib/*/libusb-1.0.so.0|libusb-1.0-0" \
	"command -v chromium|chromium" \
	"command -v npm|npm"

.PHONY: demo test lint bench system-deps venv clean

demo: venv
	$(VENV)/bin/paylab demo
	$(VENV)/bin/paylab run suites/campaigns/nightly.yaml

test: venv
	$(VENV)/bin/ruff check .
	$(VPY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(VPY) bench/run.py
	$(VPY) bench/se_apdus.py
	$(VPY) bench/backend_auth.py
	$(VPY) bench/pcsc_roundtrip.py
	$(VPY) bench/nfc_tap.py
	$(VPY) bench/ecr_roundtrip.py
	$(VPY) bench/tap_to_approval.py
	$(VPY) bench/report_10k.py
	$(VPY) bench/campaign_overhead.py
	$(VPY) bench/campaign_scaling.py

system-deps:
	@missing=""; \
	for entry in $(SYSTEM_DEPS); do \
	  check="$${entry%|*}"; pkg="$${entry##*|}"; \
	  bash -c "$$check" >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "paylab: installing system packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "paylab: missing system packages, install them first: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi

venv: $(STAMP) $(ALLURE)

# the pinned Allure 3 CLI (npm), used offline to render the campaign's Allure report
$(ALLURE): tools/allure/package-lock.json | system-deps
	npm ci --prefix tools/allure --no-audit --no-fund --loglevel=error
	touch $(ALLURE)

$(STAMP): pyproject.toml setup.py | system-deps
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
