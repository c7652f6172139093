"""serving.aspired_version_policy: the version policies and the availability-preserving plan."""
from __future__ import annotations

import pytest

from serving.aspired_version_policy import VersionPolicy, plan


def test_policy_selects_latest_all_specific() -> None:
    assert VersionPolicy().select([1, 5, 3]) == {5}
    assert VersionPolicy("latest", latest=2).select([1, 5, 3]) == {3, 5}
    assert VersionPolicy("all").select([1, 5, 3]) == {1, 3, 5}
    assert VersionPolicy("specific", versions=(3, 9)).select([1, 5, 3]) == {3}
    with pytest.raises(ValueError):
        VersionPolicy("newest")


def test_plan_loads_new_before_unloading_old() -> None:
    # v2 appears: load it, keep v1 until v2 is available
    assert plan({2}, {1, 2}, {1}, {2}).load == [2]
    assert plan({2}, {1, 2}, {1}, {2}).unload == []
    # v2 available: now v1 goes
    assert plan({2}, {1, 2}, {1, 2}, set()).unload == [1]
    # v2 broken (not loadable, not available): v1 keeps serving
    assert plan({2}, {1, 2}, {1}, set()) .unload == []
    # v1's directory deleted: unloaded even without a replacement
    assert plan(set(), set(), {1}, set()).unload == [1]
