"""Realistic sample data for both variants, written in large batches."""
from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from notifications.store.inserts import insert_tuples, set_page_cache
from notifications.store.rows import now_us

DATASET_NAMES = (
    "Ice cream", "Customer churn", "Web traffic", "Fraud signals", "Fleet telemetry",
    "Support tickets", "Energy usage", "Retail sales", "Clinical trials", "Ad spend",
)
VIEW_NAMES = (
    "icecream", "high-risk", "weekly-drop", "anomalies", "late-shipments", "vip-accounts",
    "error-spike", "refunds", "new-signups", "stale-records",
)
PEOPLE = ("Ana", "Bruno", "Chen", "Dara", "Emil", "Fatima", "Goran", "Hana", "Ivo", "Jun")
PROJECTS = ("Edge rules", "Billing API", "Data platform", "Mobile app", "Search relevance")
CHANGES = ("Refactor sshd", "Bump TLS defaults", "Add retry budget", "Drop legacy auth",
           "Tune cache TTLs", "Split ingest workers")
#: Page cache (KiB) of the connection that seeds: enough for the indexes of a million rows.
SEED_CACHE_KIB = 256 * 1024
#: Share of each user's notifications that are monitor alerts (the rest are inbox items).
ALERT_SHARE = 0.5


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _inbox_item(rng: random.Random) -> tuple[str, str, str, str, dict[str, Any]]:
    """Return kind, title, body, link and metadata of an organization inbox item."""
    kind = rng.choice(
        ("review.created", "review.approved", "version.published", "api.quota.warning"))
    person, project, change = rng.choice(PEOPLE), rng.choice(PROJECTS), rng.choice(CHANGES)
    project_id, item_id = rng.randrange(1000, 9999), rng.randrange(1000, 9999)
    if kind == "review.created":
        return (kind, f"New review on {project} project",
                f"{person} requested your review on '{change}'",
                f"/projects/prj_{project_id}/reviews/rev_{item_id}", {"project": project})
    if kind == "review.approved":
        return (kind, f"Review approved on {project} project",
                f"{person} approved '{change}'",
                f"/projects/prj_{project_id}/reviews/rev_{item_id}", {"project": project})
    if kind == "version.published":
        version = f"{rng.randrange(1, 5)}.{rng.randrange(0, 20)}.{rng.randrange(0, 10)}"
        return (kind, f"{project} {version} published",
                f"{person} published version {version} of {project}",
                f"/projects/prj_{project_id}/versions/{version}", {"version": version})
    used = rng.randrange(80, 100)
    return (kind, "API quota almost used",
            f"Your organization has used {used}% of this month's API quota",
            "/settings/billing/usage", {"percent_used": used})


def generate(
    *,
    users: int,
    per_user: int,
    orgs: int,
    datasets: int,
    random_seed: int | None = None,
    days: int = 30,
) -> Iterator[tuple[Any, ...]]:
    """Yield rows (in ``INSERT_FIELDS`` order), per user oldest first.

    A read row is seen when it was read (``seen_at`` is ``read_at``); none is archived.
    """
    rng = random.Random(random_seed)
    org_ids = [f"org_{rng.getrandbits(32):08x}" for _ in range(max(orgs, 1))]
    dataset_pool = [
        (_uuid(rng), DATASET_NAMES[i % len(DATASET_NAMES)]
         + (f" {i // len(DATASET_NAMES) + 1}" if i >= len(DATASET_NAMES) else ""))
        for i in range(max(datasets, 1))
    ]
    views = {d: [(_uuid(rng), rng.choice(VIEW_NAMES)) for _ in range(3)] for d, _ in dataset_pool}
    end = now_us()
    span = days * 86_400_000_000
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    for index in range(users):
        user_id = f"usr_{rng.getrandbits(32):08x}{index:x}"
        org_id = org_ids[index % len(org_ids)]
        times = sorted(end - rng.randrange(span) for _ in range(per_user))
        for created in times:
            read_at = created + rng.randrange(1, 3_600_000_000) if rng.random() < 0.6 else None
            if read_at is not None and read_at > end:
                read_at = None
            if rng.random() < ALERT_SHARE:
                dataset_id, dataset_name = rng.choice(dataset_pool)
                view_id, view_name = rng.choice(views[dataset_id])
                count = rng.randrange(1, 5000)
                is_alert = rng.random() < 0.85
                metadata = {"batch_id": _uuid(rng), "is_alert": is_alert, "view_name": view_name,
                            "dataset_name": dataset_name, "result_count": count}
                title = f"{count} new results in '{view_name}'" if rng.random() < 0.5 else ""
                # Monitor alerts belong to a dataset, not to an organization's inbox: the
                # organization variant shows only inbox items, as the API it mirrors does.
                yield (_uuid(rng), user_id, None, dataset_id, "monitor.alert", "saved_view",
                       view_id, title, None, None, dumps(metadata), None, created, read_at,
                       read_at, None, 0)
            else:
                kind, title, body, link, metadata = _inbox_item(rng)
                entity = kind.split(".")[0]
                entity_id = f"{entity}_{rng.getrandbits(32):08x}"
                yield (_uuid(rng), user_id, org_id, None, kind, entity, entity_id,
                       title, body, link, dumps(metadata), None, created, read_at, read_at,
                       None, 0)


def seed(
    *,
    users: int,
    per_user: int,
    orgs: int,
    datasets: int,
    random_seed: int | None = None,
    batch_size: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write sample data in batched transactions; return how many rows were written."""
    written = 0
    batch: list[tuple[Any, ...]] = []

    def flush() -> None:
        nonlocal written
        # Random UUIDs land all over the unique index on ``id``: a page cache that holds
        # the indexes saves most of the reads (about a fifth of the run time).
        insert_tuples(batch, cache_kib=SEED_CACHE_KIB)
        written += len(batch)
        if progress:
            progress(len(batch))
        batch.clear()

    for row in generate(users=users, per_user=per_user, orgs=orgs, datasets=datasets,
                        random_seed=random_seed):
        batch.append(row)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if written:
        set_page_cache(2000)  # SQLite's default again
    return written
