import os

import pytest
from hypothesis import settings

from tests.helpers import Proc

# Locally every run of the property tests explores new examples; CI
# (HYPOTHESIS_PROFILE=ci, set by .ci/run) replays a fixed derandomized set so
# that a landing does not hang on a newly found example.  What a local run
# finds is printed with its reproduction blob.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("default", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="module")
def server():
    """One pynode process shared by a test module."""
    p = Proc().start()
    yield p
    p.cleanup()


@pytest.fixture
def r(server):
    """A redis-py client on a flushed database 0."""
    c = server.client()
    c.flushall()
    yield c
    c.close()


@pytest.fixture(scope="module")
def real():
    """A real redis-server 7 to compare answers with."""
    p = Proc(redis_server=True).start()
    yield p
    p.cleanup()


# Files a server writes into its working directory.  Every test gives its
# servers a directory of their own; one of these appearing at the top of the
# repository means a test did not (and a later commit could pick it up).
_STRAY = ("dump.rdb", "appendonlydir", "nodes.conf")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_sessionstart(session):
    session.config._pynode_stray_before = {
        name for name in _STRAY if os.path.exists(os.path.join(_ROOT, name))}


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_pynode_stray_before", set())
    stray = [name for name in _STRAY
             if name not in before and os.path.exists(os.path.join(_ROOT, name))]
    if stray:
        print("\nthe test run wrote %s into %s" % (", ".join(stray), _ROOT))
        session.exitstatus = 1
