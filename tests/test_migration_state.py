"""Atomic slot migration in the cluster state machine (gossip/state.py
claim_migrated_slots / give_migrated_slots) and the slot-range helpers of
pynode/migration.py: pure, no processes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gossip import actions as A
from gossip.codec import MsgType
from pynode.migration import parse_ranges_text, ranges_of, ranges_text
from tests.test_gossip_state import IN, T0, build, msg, nid, sent


def test_target_claims_with_one_bump_and_the_source_yields():
    b = build(["b myself,master - 2 10-19", "a master - 3 0-9", "c slave a 0"], current=3)
    b.on_tick(T0)                              # links to the others
    acts = b.claim_migrated_slots(range(0, 5), now=T0)
    assert [b.slot_owner[s] for s in range(5)] == [nid("b")] * 5
    assert b.slot_owner[5] == nid("a")
    # one bump, above every other node's configEpoch, saved with fsync, told to all
    assert b.myself.config_epoch == 4 and b.current_epoch == 4
    assert any(isinstance(x, A.SaveConfig) and x.fsync for x in acts)
    assert sent(acts, MsgType.PONG)
    # the source hears the claim: its newer configEpoch takes the slots and
    # the source drops their keys (its replica learns from its stream)
    a = build(["a myself,master - 3 0-9", "b master - 2 10-19"], current=3)
    acts = a.on_message(IN, msg(MsgType.PONG, "b", cur=4, cfg=4, slots=[*range(5), *range(10, 20)],
                                port=7001), T0 + 1)
    assert [a.slot_owner[s] for s in range(5)] == [nid("b")] * 5
    assert A.DropSlotKeys(tuple(range(5))) in acts


def test_claim_without_bump_when_already_highest():
    b = build(["b myself,master - 5 10-19", "a master - 3 0-9"], current=5)
    b.claim_migrated_slots([0], now=T0)
    assert b.myself.config_epoch == 5 and b.slot_owner[0] == nid("b")
    # a tie is not enough: the claim must win everywhere
    b = build(["b myself,master - 3 10-19", "a master - 3 0-9"], current=3)
    b.claim_migrated_slots([0], now=T0)
    assert b.myself.config_epoch == 4


def test_source_gives_slots_and_drops_keys():
    a = build(["a myself,master - 3 0-9", "b master - 4 10-19"], current=4)
    acts = a.give_migrated_slots(range(0, 5), nid("b"), now=T0)
    assert [a.slot_owner[s] for s in range(5)] == [nid("b")] * 5
    assert A.DropSlotKeys(tuple(range(5))) in acts
    assert a.myself.config_epoch == 3          # the source never bumps
    # the last slots: the source follows the new owner (replica migration)
    acts = a.give_migrated_slots(range(5, 10), nid("b"), now=T0)
    assert A.Replicate(nid("b")) in acts and a.myself.is_replica
    # slots that gossip already moved are not given twice
    assert not any(isinstance(x, A.DropSlotKeys)
                   for x in a.give_migrated_slots(range(0, 5), nid("b"), now=T0))


@given(st.sets(st.integers(0, 16383), max_size=300))
def test_slot_ranges_round_trip(slots):
    assert parse_ranges_text(ranges_text(slots)) == sorted(slots)
    for lo, hi in ranges_of(slots):
        assert lo <= hi


def test_rebalance_plan_like_redis_cli():
    from pynode.rebalance import plan
    nodes = [{"id": "a" * 40, "addr": "x:1", "slots": set(range(0, 10000))},
             {"id": "b" * 40, "addr": "x:2", "slots": set(range(10000, 16384))},
             {"id": "c" * 40, "addr": "x:3", "slots": set()}]
    moves = plan([dict(n, slots=set(n["slots"])) for n in nodes], {}, 2.0, False)
    # without --use-empty-masters the empty primary stays empty: a 8192/8192 split
    assert [(s["id"][0], d["id"][0], len(m)) for s, d, m in moves] == [("a", "b", 1808)]
    moves = plan([dict(n, slots=set(n["slots"])) for n in nodes], {}, 2.0, True)
    got = {}
    for s, d, m in moves:
        got[d["id"][0]] = got.get(d["id"][0], 0) + len(m)
    assert sum(got.values()) == 10000 - 5461 + 16384 - 10000 - 5461 and set(got) == {"c"}
    # weights: b weighs twice a and c
    moves = plan([dict(n, slots=set(n["slots"])) for n in nodes], {"b": 2, "c": 1}, 2.0, False)
    final = {n: 0 for n in "abc"}
    final["a"], final["b"] = 10000, 6384
    for s, d, m in moves:
        final[s["id"][0]] -= len(m)
        final[d["id"][0]] += len(m)
    assert final == {"a": 4096, "b": 8192, "c": 4096}
    # balanced: nothing to do
    even = [{"id": c * 40, "addr": "", "slots": set(range(i * 5461, min(16384, i * 5461 + 5462)))}
            for i, c in enumerate("abc")]
    assert plan(even, {}, 2.0, False) == []
