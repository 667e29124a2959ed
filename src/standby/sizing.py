"""What a Heroku dyno or Postgres plan becomes on AWS.

The tables are data copied from the providers' published figures, with the page each comes from; the
mapping is chosen so the AWS side never has less memory than the Heroku side it replaces. A size that
is not in a table is a configuration error, never a guess.

Sources:
- [dyno-types] https://devcenter.heroku.com/articles/dyno-types (memory and compute, June 2024 revision)
- [pg-plans] https://devcenter.heroku.com/articles/heroku-postgres-plans (tiers, HA, essential storage)
- [pg-tech] https://devcenter.heroku.com/articles/heroku-postgres-production-tier-technical-characterization
  (provisioned RAM and storage limit of the standard, premium, private and shield plans)
- [fargate] https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html
  ("Task CPU and memory": the valid CPU/memory pairs)
- [rds-classes] https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Concepts.DBInstanceClass.Summary.html
  (vCPU and memory of each DB instance class)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from standby.errors import SizingError

if TYPE_CHECKING:
    from standby.vocabulary import Mode

GIB: Final = 1024  # MiB


# --- Fargate ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FargateSize:
    cpu: int  # CPU units, 1024 = 1 vCPU
    memory_mib: int


# [fargate] CPU units -> (lowest memory, highest memory, step), all in MiB.
FARGATE_MEMORY_RANGES: Final[dict[int, tuple[int, int, int]]] = {
    256: (512, 2 * GIB, 0),  # 512, 1024 or 2048 only; checked below
    512: (1 * GIB, 4 * GIB, 1 * GIB),
    1024: (2 * GIB, 8 * GIB, 1 * GIB),
    2048: (4 * GIB, 16 * GIB, 1 * GIB),
    4096: (8 * GIB, 30 * GIB, 1 * GIB),
    8192: (16 * GIB, 60 * GIB, 4 * GIB),
    16384: (32 * GIB, 120 * GIB, 8 * GIB),
}
FARGATE_MAX_MEMORY_MIB: Final = 120 * GIB


def is_valid_fargate_size(size: FargateSize) -> bool:
    """True when Fargate accepts this CPU/memory pair for a Linux task."""
    limits = FARGATE_MEMORY_RANGES.get(size.cpu)
    if limits is None:
        return False
    low, high, step = limits
    if size.cpu == 256:
        return size.memory_mib in (512, 1 * GIB, 2 * GIB)
    return low <= size.memory_mib <= high and (size.memory_mib - low) % step == 0


# --- Heroku dynos ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DynoSize:
    name: str  # the spelling the Platform API returns
    memory_mib: int  # [dyno-types]
    compute: str  # [dyno-types] "Compute" column: relative CPU
    fargate: FargateSize | None  # None: larger than any Fargate task


def _dyno(name: str, memory_mib: int, compute: str, cpu: int | None, memory: int | None) -> DynoSize:
    fargate = FargateSize(cpu, memory) if cpu is not None and memory is not None else None
    return DynoSize(name, memory_mib, compute, fargate)


# Fargate vCPUs follow the dyno's compute share: 1x-4x -> 0.25, 2x-8x -> 0.5, 12x -> 2, 24x -> 4,
# 50x -> 8 (16 where the memory needs it), 100x -> 16. Memory is the smallest valid amount >= the dyno's.
_DEDICATED_TIERS: Final = [
    # suffix, memory, compute, Fargate cpu, Fargate memory
    ("M", int(2.5 * GIB), "12x", 2048, 4 * GIB),
    ("L", 14 * GIB, "50x", 8192, 16 * GIB),
    ("L-RAM", 30 * GIB, "24x", 4096, 30 * GIB),
    ("XL", 62 * GIB, "50x", 16384, 64 * GIB),
    # 126 GB is more than Fargate's largest task (120 GB): no automatic mapping.
    ("2XL", 126 * GIB, "100x", None, None),
]

DYNO_SIZES: Final[dict[str, DynoSize]] = {
    d.name.lower(): d
    for d in [
        _dyno("Eco", 512, "1x-4x", 256, 512),
        _dyno("Basic", 512, "1x-4x", 256, 512),
        _dyno("Standard-1X", 512, "1x-4x", 256, 512),
        _dyno("Standard-2X", 1 * GIB, "2x-8x", 512, 1 * GIB),
        _dyno("Private-S", 1 * GIB, "12x", 1024, 2 * GIB),
        _dyno("Shield-S", 1 * GIB, "12x", 1024, 2 * GIB),
        *[
            _dyno(f"{tier}-{suffix}", memory, compute, cpu, fargate_memory)
            for tier in ("Performance", "Private", "Shield")
            for suffix, memory, compute, cpu, fargate_memory in _DEDICATED_TIERS
        ],
    ]
}


def dyno_size(name: str) -> DynoSize:
    """The dyno size called `name` (any letter case), or a SizingError listing the known ones."""
    found = DYNO_SIZES.get(name.strip().lower())
    if found is None:
        raise SizingError(
            [f"unknown Heroku dyno size. Must be one of {', '.join(known_dyno_sizes())}. Got {name!r}."]
        )
    return found


def known_dyno_sizes() -> list[str]:
    return [d.name for d in DYNO_SIZES.values()]


def fargate_size_for(dyno: str, process_type: str = "") -> FargateSize:
    """The Fargate task size that replaces one dyno of this size.

    Refuses the sizes no Fargate task can hold, naming the override that lets an operator decide.
    """
    size = dyno_size(dyno)
    if size.fargate is None:
        key = f"standby:serviceSizes.{process_type or '<process type>'}"
        raise SizingError(
            [
                f"Heroku size {size.name} has {size.memory_mib // GIB} GB of memory; the largest Fargate task "
                f"has {FARGATE_MAX_MEMORY_MIB // GIB} GB. Set {key} to an explicit Fargate size "
                "(for example {cpu: 16384, memory: 122880}) if the process fits in it."
            ]
        )
    return size.fargate


# --- Heroku Postgres -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RdsClass:
    name: str
    vcpu: int
    memory_gib: int
    burstable: bool = False


# [rds-classes]
RDS_CLASSES: Final[dict[str, RdsClass]] = {
    c.name: c
    for c in [
        RdsClass("db.t4g.micro", 2, 1, burstable=True),
        RdsClass("db.t4g.small", 2, 2, burstable=True),
        RdsClass("db.t4g.medium", 2, 4, burstable=True),
        RdsClass("db.m7g.large", 2, 8),
        RdsClass("db.r7g.large", 2, 16),
        RdsClass("db.r7g.xlarge", 4, 32),
        RdsClass("db.r7g.2xlarge", 8, 64),
        RdsClass("db.r7g.4xlarge", 16, 128),
        RdsClass("db.r7g.8xlarge", 32, 256),
        RdsClass("db.r7g.16xlarge", 64, 512),
        RdsClass("db.x2g.12xlarge", 48, 768),
    ]
}

RDS_MIN_STORAGE_GIB: Final = 20  # gp3 lower bound


@dataclass(frozen=True)
class PostgresPlan:
    name: str  # e.g. "standard-0"
    tier: str
    ram_gib: float | None  # None: essential plans share RAM and publish no figure
    storage_gib: int  # the plan's storage limit
    rds_class: str
    multi_az: bool  # the tier is HA on Heroku, so its AWS equivalent is Multi-AZ

    @property
    def allocated_storage_gib(self) -> int:
        return max(self.storage_gib, RDS_MIN_STORAGE_GIB)


HA_TIERS: Final = frozenset({"premium", "private", "shield"})  # [pg-plans] "HA" column

# [pg-tech] level -> (provisioned RAM GB, storage limit GB). The same level has the same hardware in
# every production tier; the tiers differ in availability and isolation.
_PRODUCTION_LEVELS: Final[dict[int, tuple[float, int]]] = {
    0: (4, 64),
    2: (8, 256),
    3: (15, 512),
    4: (30, 768),
    5: (61, 1024),
    6: (122, 1536),
    7: (244, 2048),
    8: (488, 3072),
    9: (768, 4096),
}

# The smallest non-burstable class with at least the plan's RAM: a standby that takes production load
# must not run out of CPU credits in the middle of a disaster.
_CLASS_FOR_LEVEL: Final[dict[int, str]] = {
    0: "db.m7g.large",
    2: "db.m7g.large",
    3: "db.r7g.large",
    4: "db.r7g.xlarge",
    5: "db.r7g.2xlarge",
    6: "db.r7g.4xlarge",
    7: "db.r7g.8xlarge",
    8: "db.r7g.16xlarge",
    9: "db.x2g.12xlarge",
}

# [pg-plans] essential storage limits; their RAM is shared and unpublished, so burstable classes fit.
_ESSENTIAL: Final[dict[int, tuple[int, str]]] = {
    0: (1, "db.t4g.micro"),
    1: (10, "db.t4g.small"),
    2: (32, "db.t4g.medium"),
}

POSTGRES_PLANS: Final[dict[str, PostgresPlan]] = {
    p.name: p
    for p in [
        *[
            PostgresPlan(f"essential-{level}", "essential", None, storage, rds_class, multi_az=False)
            for level, (storage, rds_class) in _ESSENTIAL.items()
        ],
        *[
            PostgresPlan(
                f"{tier}-{level}", tier, ram, storage, _CLASS_FOR_LEVEL[level], multi_az=tier in HA_TIERS
            )
            for tier in ("standard", "premium", "private", "shield")
            for level, (ram, storage) in _PRODUCTION_LEVELS.items()
        ],
    ]
}

ADDON_SERVICE: Final = "heroku-postgresql"


def postgres_plan(name: str) -> PostgresPlan:
    """The Heroku Postgres plan called `name` ("standard-0" or "heroku-postgresql:standard-0")."""
    short = name.strip().lower().removeprefix(f"{ADDON_SERVICE}:")
    found = POSTGRES_PLANS.get(short)
    if found is None:
        raise SizingError(
            [f"unknown Heroku Postgres plan. Must be one of {known_postgres_plans()}. Got {name!r}."]
        )
    return found


def known_postgres_plans() -> str:
    """The plan names, compactly: "essential-0/1/2, standard-0/2/3/...", in table order."""
    levels: dict[str, list[str]] = {}
    for plan in POSTGRES_PLANS.values():
        levels.setdefault(plan.tier, []).append(plan.name.removeprefix(f"{plan.tier}-"))
    return ", ".join(f"{tier}-{'/'.join(names)}" for tier, names in levels.items())


def desired_count(mode: Mode, primary_quantity: int) -> int:
    """Tasks per service: none in pilot-light, one (if the primary runs any) when warm, all when active."""
    # Compared by value: config.models imports this module, so Mode is imported for the types only.
    if mode == "pilot-light" or primary_quantity == 0:
        return 0
    return 1 if mode == "warm" else primary_quantity
