PYTHON ?= python3
PORT ?= 7000

.PHONY: setup start test bench clean

# Everything a fresh Debian machine needs: redis-tools/redis-server for the
# cross-checks and benchmarks, then pynode with its test extras.
setup:
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server redis-tools; \
	fi
	$(PYTHON) -m pip install -q -e '.[test]'

start:
	pynode --port $(PORT)

test:
	$(PYTHON) -m pytest tests

bench:
	$(PYTHON) -m tests.bench

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis
