# `make run` serves the registry on the embedded default (SQLite + ./data, port 5000);
# `make test` runs the whole test suite. Both set up .venv on first use.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench lint system-deps secrets backup restore clean

run: $(VENV)/.installed
	$(BIN)/registry serve

# The suite runs on TEST_WORKERS processes (pytest-xdist); README.md's "Tests" says how
# many paid on 2 cores, and how to run one group of tests alone.
TEST_WORKERS ?= 4
# axe-core from the npm registry, for the console's browser tests (tests/e2e/axe.py).
AXE := .cache/axe/node_modules/axe-core/axe.min.js
test: lint system-deps $(AXE)
	$(BIN)/pytest -n $(TEST_WORKERS)

$(AXE):
	npm install --no-audit --no-fund --prefix .cache/axe axe-core@4.14.1

# Every hot path next to Distribution 2.8 (Debian's docker-registry), with wrk and nginx,
# our index on SQLite and then on PostgreSQL; then issue 36's goals from both.
bench: $(VENV)/.installed-test
	@command -v wrk >/dev/null && command -v ab >/dev/null && command -v docker-registry >/dev/null && command -v nginx >/dev/null \
	  && command -v ss >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	  || apt-get install -y -qq --no-install-recommends wrk apache2-utils docker-registry nginx curl postgresql iproute2
	$(BIN)/python benchmarks/compare.py --database both

lint: $(VENV)/.installed-test
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
	@[ -s secrets/sealing_key ] || openssl rand -base64 32 > secrets/sealing_key
	@# The name clients use: a DNS name, or an address (IP: in the certificate).
	@host=$${REGISTRY_HOSTNAME:-localhost}; case $$host in *[!0-9.]*) kind=DNS;; *) kind=IP;; esac; \
	  case $$host in *:*) kind=IP;; esac; \
	  [ -s secrets/tls_cert ] || openssl req -x509 -newkey ec \
	  -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj "/CN=$$host" \
	  -addext "subjectAltName=$$kind:$$host" \
	  -keyout secrets/tls_key -out secrets/tls_cert 2>/dev/null
	@# Readable inside the containers (compose mounts them as they are); the folder keeps
	@# other users of this host out.
	@chmod 644 secrets/*
	@echo "secrets/ is ready; the admin password is in secrets/admin_password"

# Backups of the compose stack, into $(BACKUP) (default backup/): garbage collection holds
# its deletions on every replica, the database is dumped, then the blobs are copied, so
# every blob the dump references is in the copy; then the hold ends (or runs out, should
# this stop halfway). `make restore` puts a backup into a stack with empty volumes.
COMPOSE ?= docker compose
BACKUP ?= backup
backup:
	@mkdir -p $(BACKUP)
	@set -e; \
	  $(COMPOSE) exec -T registry registry gc hold --hours 6; \
	  trap '$(COMPOSE) exec -T registry registry gc release' EXIT; \
	  $(COMPOSE) exec -T postgres pg_dump -U registry --format=custom registry > $(BACKUP)/registry.dump; \
	  $(COMPOSE) run --rm --no-deps -u root -v "$(abspath $(BACKUP)):/backup" --entrypoint tar \
	    registry -C /data/storage -cf /backup/blobs.tar .
	@echo "$(BACKUP)/ holds registry.dump and blobs.tar; keep secrets/ with them"

restore:
	@[ -s $(BACKUP)/registry.dump ] && [ -s $(BACKUP)/blobs.tar ] \
	  || { echo "no backup in $(BACKUP)/ (registry.dump, blobs.tar)" >&2; exit 1; }
	$(COMPOSE) up -d postgres
	@# Over TCP: while the image makes a new cluster, a server of its own answers on the
	@# socket only, and then stops.
	@until $(COMPOSE) exec -T postgres pg_isready -h 127.0.0.1 -U registry -d registry >/dev/null; do sleep 1; done
	$(COMPOSE) exec -T postgres pg_restore -U registry -d registry --no-owner --exit-on-error < $(BACKUP)/registry.dump
	$(COMPOSE) run --rm --no-deps -u root -v "$(abspath $(BACKUP)):/backup" --entrypoint sh \
	  registry -c 'tar -C /data/storage -xf /backup/blobs.tar && chown -R registry /data/storage'
	$(COMPOSE) up -d
	@# The dump was taken under the backup's hold, which ends here.
	$(COMPOSE) exec -T registry registry gc release
	@# Blobs pushed after the dump have no row: queued for garbage collection.
	$(COMPOSE) exec -T registry registry check --repair

# What the server needs (`make run`: 182 MB), and the test tools on top of it for `make test`
# and `make lint` (playwright, moto, schemathesis, mypy, ruff: 530 MB more). The venv's own
# pip (Debian 12's 23.0) installs a pyproject project editable; upgrading it first cost a
# download and 4 s for nothing.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
