import pytest

from tests.helpers import Proc


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
