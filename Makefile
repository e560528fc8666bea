# The Python that creates the project's virtual environment (.venv); every
# target after `setup` runs pynode, the tests and the tools from .venv, so
# nothing is installed into the system Python (Debian 12 refuses that with
# "externally-managed-environment").
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 7000
# Stamps: `setup` reinstalls only when pyproject.toml or the npm lock changed.
PY_STAMP := $(VENV)/.pynode-installed
NODE_STAMP := tests/node/node_modules/.pynode-installed
# apt-get as root, through sudo otherwise
APT = if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq

.PHONY: setup system-packages start test bench clean cluster cluster-stop cluster-status \
	bench-cluster chaos sim-scale

# Everything a fresh Debian machine needs: redis-tools/redis-server for the
# cross-checks and benchmarks, chromium + chromium-driver for the dashboard's
# browser test, pynode with its test and dashboard extras in .venv, and
# node-redis and ioredis (pinned by tests/node/package-lock.json) for the
# cluster client tests.
setup: system-packages $(PY_STAMP) $(NODE_STAMP)

system-packages:
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
		$(APT) redis-server redis-tools; \
	fi
	@if ! command -v npm >/dev/null; then $(APT) nodejs npm; fi
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		$(APT) chromium chromium-driver; \
	fi

# Debian's python3 has venv only with python3-venv installed.  The `fast`
# extra (compiled LZF, crcmod's compiled CRC64 for short DUMP payloads) needs a
# C compiler and Python's headers; without them pynode is installed with the
# pure-Python LZF and anycrc alone (same bytes, slower).
$(PY_STAMP): pyproject.toml
	@if ! [ -x $(PY) ]; then \
		rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
			rm -rf $(VENV); $(APT) python3-venv && $(PYTHON) -m venv $(VENV); }; \
	fi
	@echo "installing pynode and its test dependencies into $(VENV)"
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test,fast,dashboard]' || { \
		echo "the fast extra (python-lzf, crcmod) did not build: installing without it"; \
		$(PY) -m pip install -q --disable-pip-version-check -e '.[test,dashboard]'; }
	@touch $@

$(NODE_STAMP): tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --silent
	@touch $@

start: setup
	$(VENV)/bin/pynode --port $(PORT)

# Most of the suite runs in two workers, one test module per worker at a time
# (the process tests spend most of their time waiting); the tests marked
# serial then run alone.
test:
	$(PY) -m pytest -n 2 --dist loadfile -m "not serial" tests
	$(PY) -m pytest -m serial tests

bench:
	$(PY) -m tests.bench

# A local 3+3 cluster on 7000-7005 (conf/7000.conf ... 7005.conf), data in ./cluster.
# Running it again restarts the same cluster; `make cluster-stop` keeps the data.
cluster: setup
	$(PY) -m pynode.localcluster start

cluster-stop:
	$(PY) -m pynode.localcluster stop

cluster-status:
	$(PY) -m pynode.localcluster status

# redis-benchmark --cluster against a pynode cluster and a redis-server cluster.
bench-cluster: setup
	$(PY) -m tests.bench_cluster

# Chaos, long form: 20 rounds of kill -9 of a primary + restart on a 3+3 cluster
# under a writer with a ledger of WAIT-acknowledged writes, then SIGSTOP/SIGCONT of a
# primary, kill -9 of a replica and a manual CLUSTER FAILOVER; prints each round's
# failover time and the median in node-timeouts; the same kill -9 rounds against
# redis-server 7.0 for comparison; the consecutive failover (a shard's primary, then
# the replica that replaced it) with one busy process per core.  Then the long simulation sweep of
# elections / manual failover (1000 seeded schedules).  Then the long form of the
# live resharding test: 2000 slots moved and a fourth primary filled with
# --cluster-use-empty-masters and drained, under a ledger and redis-benchmark.
# Then the long form of atomic slot migration: 4096 slots holding 1M keys moved
# by CLUSTER MIGRATESLOTS under a ledger and redis-benchmark, and its faults.
# Then 20 rounds of real partitions over network namespaces (root): a primary cut
# off alone (failover), then a host holding a primary and its replica (none).
# Then the random fault sequences with slot moves (1000 seeded schedules, the
# node's own nodes.conf save policy), and the simulator at scale: 1000 nodes
# form, converge, measure the bus and survive a primary failure (prints each
# phase's wall time and the bus figures next to Redis's gossip rules; fails
# over SIM_SCALE_BUDGET seconds of wall time, so it runs last and the steps
# before it run whatever its time).
# PYNODE_CLUSTER_SERVER=redis runs the process part against redis-server 7.0.
CHAOS_ROUNDS ?= 20
SIM_SCALE_NODES ?= 1000
SIM_SCALE_BUDGET ?= 600
# the simulator's gossip core compiled with mypyc (built once per source hash in
# build/gossip-mypyc/; mypy comes with the test extra, gcc with the system);
# SIM_COMPILED= runs it as pure Python, the same events at ~1.5x the CPU time
SIM_COMPILED ?= 1
chaos:
	$(PY) -m tests.chaos_long --rounds $(CHAOS_ROUNDS)
	$(PY) -m tests.chaos_long --rounds $(CHAOS_ROUNDS) --server redis --no-extras
	$(PY) -m pytest tests/test_chaos_load.py
	PYNODE_SIM_SCHEDULES=1000 $(PY) -m pytest tests/test_gossip_sim_failover.py
	PYNODE_SIM_RANDOM=1000 $(PY) -m pytest tests/test_gossip_sim_random.py
	PYNODE_LIVE_FORM=long $(PY) -m pytest tests/test_reshard_live.py
	PYNODE_ATOMIC_FORM=long $(PY) -m pytest tests/test_atomic_migration.py
	PYNODE_PROXY_KILLS=5 $(PY) -m pytest tests/test_proxy.py -k kill_9
	PYNODE_NETNS_ROUNDS=$(CHAOS_ROUNDS) $(PY) -m pytest tests/test_chaos_netns.py
	$(PY) -m tests.sim_scale --nodes $(SIM_SCALE_NODES) --budget $(SIM_SCALE_BUDGET) $(if $(SIM_COMPILED),--compiled)

# the 1000-node simulation alone (SIM_COMPILED as for chaos)
sim-scale:
	$(PY) -m tests.sim_scale --nodes $(SIM_SCALE_NODES) --budget $(SIM_SCALE_BUDGET) $(if $(SIM_COMPILED),--compiled)

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis
