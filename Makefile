# `make run` serves the registry on the embedded default (SQLite + ./data, port 5000);
# `make test` runs the whole test suite. Both set up .venv on first use.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench lint system-deps secrets clean

run: $(VENV)/.installed
	$(BIN)/registry serve

test: lint system-deps
	$(BIN)/pytest

# Every hot path next to Distribution 2.8 (Debian's docker-registry), with wrk and nginx.
bench: $(VENV)/.installed
	@command -v wrk >/dev/null && command -v ab >/dev/null && command -v docker-registry >/dev/null && command -v nginx >/dev/null \
	  || apt-get install -y -qq --no-install-recommends wrk apache2-utils docker-registry nginx curl
	$(BIN)/python benchmarks/compare.py

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy registry

system-deps:
	@.ci/system-deps

# Secrets of the compose stack (docker-compose.yml), made once; existing files are kept.
secrets:
	@mkdir -p secrets && chmod 700 secrets
	@for name in postgres_password minio_password admin_password; do \
	  [ -s secrets/$$name ] || openssl rand -hex 24 > secrets/$$name; done
	@[ -s secrets/token_key ] || openssl genpkey -algorithm EC \
	  -pkeyopt ec_paramgen_curve:P-256 -out secrets/token_key 2>/dev/null
	@[ -s secrets/tls_cert ] || openssl req -x509 -newkey ec \
	  -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj "/CN=$${REGISTRY_HOSTNAME:-localhost}" \
	  -addext "subjectAltName=DNS:$${REGISTRY_HOSTNAME:-localhost}" \
	  -keyout secrets/tls_key -out secrets/tls_cert 2>/dev/null
	@# Readable inside the containers (compose mounts them as they are); the folder keeps
	@# other users of this host out.
	@chmod 644 secrets/*
	@echo "secrets/ is ready; the admin password is in secrets/admin_password"

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
