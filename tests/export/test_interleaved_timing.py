"""Interleaved timing: every call timed once per round, in a shuffled, reproducible order."""

from __future__ import annotations

from gan_brevitas.deploy.bench import round_orders, time_interleaved


def test_every_round_is_a_permutation_and_the_orders_vary():
    orders = round_orders(6, runs=8)
    assert all(sorted(order) == list(range(6)) for order in orders)
    assert len({tuple(order) for order in orders}) > 1  # not one fixed order
    assert {order[0] for order in orders} != {0}  # the first call does not always lead
    assert round_orders(6, runs=8) == orders  # seeded: the same benchmark, the same orders


def test_each_call_is_timed_once_per_round_in_the_shuffled_order():
    seen: list[int] = []
    calls = [lambda i=i: seen.append(i) for i in range(4)]
    times = time_interleaved(calls, runs=5, warmup=1)
    assert [len(t) for t in times] == [5, 5, 5, 5]
    assert seen[:4] == [0, 1, 2, 3]  # the warm-up round
    assert seen[4:] == [i for order in round_orders(4, 5) for i in order]
