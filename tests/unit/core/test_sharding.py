"""The stable shard function and fair-share arithmetic."""

from __future__ import annotations

from collections import Counter

import pytest

from outboxkit.sharding import aggregate_hash, fair_share, shard_of

# Pinned: changing the hash would move every aggregate to another shard of existing outboxes.
GOLDEN = [
    ("order-1", 2709196713320186429, 61, 13, 4),
    ("customer-42", 3738263782846221354, 42, 10, 5),
    ("a", 4681665781835383343, 47, 15, 2),
    ("", -1970711489451281740, 52, 4, 5),
    ("日本", -1714967866143106246, 58, 10, 0),
    ("550e8400-e29b-41d4-a716-446655440000", -1170126841048872708, 60, 12, 6),
]


@pytest.mark.parametrize(("aggregate", "hashed", "s64", "s16", "s7"), GOLDEN)
def test_shard_of_is_pinned(aggregate: str, hashed: int, s64: int, s16: int, s7: int) -> None:
    assert aggregate_hash(aggregate) == hashed
    assert (shard_of(aggregate, 64), shard_of(aggregate, 16), shard_of(aggregate, 7)) == (
        s64,
        s16,
        s7,
    )


def test_hash_fits_a_signed_bigint() -> None:
    for n in range(2000):
        assert -(2**63) <= aggregate_hash(f"agg-{n}") < 2**63


@pytest.mark.parametrize("shard_count", [1, 2, 7, 64, 1000])
def test_shard_of_is_in_range(shard_count: int) -> None:
    for n in range(2000):
        assert 0 <= shard_of(f"agg-{n}", shard_count) < shard_count


def test_shard_of_spreads_evenly() -> None:
    counts = Counter(shard_of(f"order-{n}", 16) for n in range(16_000))
    assert len(counts) == 16
    assert all(800 <= c <= 1200 for c in counts.values()), counts


def test_shard_of_rejects_bad_shard_count() -> None:
    with pytest.raises(ValueError, match="shard_count"):
        shard_of("x", 0)


@pytest.mark.parametrize("shard_count", [1, 2, 7, 8, 64, 65])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 70])
def test_fair_share_sums_to_shard_count_and_differs_by_at_most_one(
    shard_count: int, n: int
) -> None:
    instances = [f"relay-{i}" for i in range(n)]
    shares = [fair_share(shard_count, instances, me) for me in instances]
    assert sum(shares) == shard_count
    assert max(shares) - min(shares) <= 1


def test_fair_share_is_independent_of_list_order_and_counts_me() -> None:
    assert fair_share(8, ["b", "a"], "a") == fair_share(8, ["a", "b"], "a") == 4
    assert fair_share(8, [], "a") == 8
    assert fair_share(8, ["b"], "a") == 4
