"""Sizing tables: every listed Heroku size has an AWS equivalent at least as large, or a clear refusal."""

from __future__ import annotations

import pytest

from standby import sizing
from standby.errors import SizingError
from standby.sizing import FargateSize


@pytest.mark.parametrize(
    "dyno", sorted(sizing.DYNO_SIZES.values(), key=lambda d: d.name), ids=lambda d: d.name
)
def test_every_dyno_maps_to_a_valid_fargate_size_with_at_least_its_memory(dyno: sizing.DynoSize) -> None:
    if dyno.fargate is None:
        # Only sizes bigger than Fargate's largest task may lack a mapping, and they must say so.
        assert dyno.memory_mib > sizing.FARGATE_MAX_MEMORY_MIB
        with pytest.raises(SizingError, match=r"standby:serviceSizes\.worker"):
            sizing.fargate_size_for(dyno.name, "worker")
        return
    assert sizing.is_valid_fargate_size(dyno.fargate), dyno.fargate
    assert dyno.fargate.memory_mib >= dyno.memory_mib
    assert sizing.fargate_size_for(dyno.name) == dyno.fargate


def test_the_common_runtime_sizes_of_the_dyno_types_page_are_all_listed() -> None:
    for name in ["eco", "basic", "standard-1x", "standard-2x", "performance-m", "performance-l",
                 "performance-l-ram", "performance-xl", "performance-2xl"]:  # fmt: skip
        assert sizing.dyno_size(name).name.lower() == name


def test_dyno_names_are_matched_in_any_letter_case() -> None:
    assert sizing.dyno_size("STANDARD-2x").name == "Standard-2X"


def test_an_unknown_dyno_size_is_a_configuration_error_listing_the_known_ones() -> None:
    with pytest.raises(SizingError) as raised:
        sizing.dyno_size("standard-3x")
    assert raised.value.exit_code == 2
    assert "Got 'standard-3x'" in str(raised.value)
    assert "Performance-L-RAM" in str(raised.value)


@pytest.mark.parametrize(
    ("size", "valid"),
    [
        (FargateSize(256, 512), True),
        (FargateSize(256, 3072), False),
        (FargateSize(512, 4096), True),
        (FargateSize(512, 5120), False),
        (FargateSize(4096, 30720), True),
        (FargateSize(8192, 20480), True),
        (FargateSize(8192, 18432), False),  # 8 vCPU steps by 4 GB
        (FargateSize(16384, 122880), True),
        (FargateSize(16384, 131072), False),
        (FargateSize(3072, 8192), False),
    ],
)
def test_fargate_pairs_follow_the_published_table(size: FargateSize, valid: bool) -> None:
    assert sizing.is_valid_fargate_size(size) is valid


@pytest.mark.parametrize("plan", list(sizing.POSTGRES_PLANS.values()), ids=lambda p: p.name)
def test_every_postgres_plan_maps_to_an_rds_class_with_at_least_its_ram(plan: sizing.PostgresPlan) -> None:
    rds = sizing.RDS_CLASSES[plan.rds_class]
    if plan.ram_gib is None:
        assert plan.tier == "essential"
    else:
        assert rds.memory_gib >= plan.ram_gib
        assert not rds.burstable, "production plans must not land on CPU-credit instances"
    assert plan.allocated_storage_gib >= plan.storage_gib
    assert plan.allocated_storage_gib >= sizing.RDS_MIN_STORAGE_GIB


@pytest.mark.parametrize(
    ("tier", "multi_az"),
    [("essential", False), ("standard", False), ("premium", True), ("private", True), ("shield", True)],
)
def test_ha_tiers_become_multi_az(tier: str, multi_az: bool) -> None:
    plans = [p for p in sizing.POSTGRES_PLANS.values() if p.tier == tier]
    assert plans
    assert all(p.multi_az is multi_az for p in plans)


def test_plan_names_are_accepted_with_or_without_the_addon_service() -> None:
    assert sizing.postgres_plan("heroku-postgresql:premium-4") == sizing.postgres_plan("premium-4")
    assert sizing.postgres_plan("premium-4").storage_gib == 768


def test_an_unknown_postgres_plan_is_a_configuration_error() -> None:
    with pytest.raises(SizingError, match=r"standard-0/2/3.*Got 'hobby-dev'"):
        sizing.postgres_plan("hobby-dev")
