PYTHON ?= python3
PORT ?= 7000

.PHONY: setup start test bench clean cluster cluster-stop cluster-status bench-cluster chaos

# Everything a fresh Debian machine needs: redis-tools/redis-server for the
# cross-checks and benchmarks, pynode with its test extras, and node-redis and
# ioredis (pinned by tests/node/package-lock.json) for the cluster client tests.
setup:
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server redis-tools; \
	fi
	$(PYTHON) -m pip install -q -e '.[test,fast]'
	@if ! command -v npm >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm; \
	fi
	npm ci --prefix tests/node --no-audit --no-fund --silent

start:
	pynode --port $(PORT)

test:
	$(PYTHON) -m pytest tests

bench:
	$(PYTHON) -m tests.bench

# A local 3+3 cluster on 7000-7005 (conf/7000.conf ... 7005.conf), data in ./cluster.
# Running it again restarts the same cluster; `make cluster-stop` keeps the data.
cluster: setup
	$(PYTHON) -m pynode.localcluster start

cluster-stop:
	$(PYTHON) -m pynode.localcluster stop

cluster-status:
	$(PYTHON) -m pynode.localcluster status

# redis-benchmark --cluster against a pynode cluster and a redis-server cluster.
bench-cluster: setup
	$(PYTHON) -m tests.bench_cluster

# Chaos, long form: 20 rounds of kill -9 of a primary + restart on a 3+3 cluster
# under a writer with a ledger of WAIT-acknowledged writes, then SIGSTOP/SIGCONT of a
# primary, kill -9 of a replica and a manual CLUSTER FAILOVER; prints each round's
# failover time and the median in node-timeouts.  Then the long simulation sweep of
# elections / manual failover (1000 seeded schedules).  Then the long form of the
# live resharding test: 2000 slots moved and a fourth primary filled with
# --cluster-use-empty-masters and drained, under a ledger and redis-benchmark.
# PYNODE_CLUSTER_SERVER=redis runs the process part against redis-server 7.0.
CHAOS_ROUNDS ?= 20
chaos:
	$(PYTHON) -m tests.chaos_long --rounds $(CHAOS_ROUNDS)
	PYNODE_SIM_SCHEDULES=1000 $(PYTHON) -m pytest tests/test_gossip_sim_failover.py
	PYNODE_LIVE_FORM=long $(PYTHON) -m pytest tests/test_reshard_live.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis
