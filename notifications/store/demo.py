"""The demo's sample data: the users and organizations the README's examples use."""
from __future__ import annotations

import random
import uuid
from typing import Any

from notifications.store import inserts, reads, stats
from notifications.store import rows as stored

#: Demo users and their organizations; the README's examples use alice in acme.
USERS: tuple[tuple[str, str], ...] = (("alice", "acme"), ("bob", "acme"), ("carol", "globex"))
#: Datasets of the monitor alerts (the first is the one the README's examples name).
DATASETS: tuple[tuple[str, str], ...] = (
    ("a981fc0c-2d1f-11f1-a7ca-d2580fa2deac", "Ice cream"),
    ("0c5c7fd0-a6a3-4450-a513-270e269e0d37", "Customer churn"),
)
VIEWS = ("icecream", "high-risk", "weekly-drop")
_HOUR_US = 3_600_000_000
#: Inbox items: kind, title, body, link.
_INBOX = (
    ("review.created", "New review on Edge rules project",
     "Ana requested your review on 'Refactor sshd'", "/projects/prj_1234/reviews/rev_5678"),
    ("review.approved", "Review approved on Billing API project",
     "Bruno approved 'Bump TLS defaults'", "/projects/prj_2345/reviews/rev_6789"),
    ("version.published", "Data platform 2.4.0 published",
     "Chen published version 2.4.0 of Data platform", "/projects/prj_3456/versions/2.4.0"),
    ("api.quota.warning", "API quota almost used",
     "Your organization has used 91% of this month's API quota", "/settings/billing/usage"),
    ("review.created", "New review on Search relevance project",
     "Dara requested your review on 'Tune cache TTLs'", "/projects/prj_4567/reviews/rev_7890"),
)


def rows(now_us: int, random_seed: int = 7) -> list[dict[str, Any]]:
    """Return the demo's notifications: per user, monitor alerts and inbox items, oldest first."""
    rng = random.Random(random_seed)

    def new_uuid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    view_ids = {view: new_uuid() for view in VIEWS}
    items: list[dict[str, Any]] = []
    for user_number, (user_id, org_id) in enumerate(USERS):
        alerts = 6 if user_number == 0 else 3
        inbox = len(_INBOX) if user_number == 0 else 3
        for n in range(alerts):
            dataset_id, dataset_name = DATASETS[n % len(DATASETS)]
            view = VIEWS[n % len(VIEWS)]
            count = rng.randrange(1, 2000)
            created = now_us - (alerts + inbox - n) * 3 * _HOUR_US - rng.randrange(_HOUR_US)
            items.append({
                # Monitor alerts belong to a dataset, not to an organization's inbox.
                "user_id": user_id, "dataset_id": dataset_id, "kind": "monitor.alert",
                "entity_type": "saved_view", "entity_id": view_ids[view],
                "title": f"{count} new results in '{view}'",
                "body": f"{count} new rows of {dataset_name} match the saved view '{view}'",
                "metadata": {"view_name": view, "dataset_name": dataset_name,
                             "result_count": count, "batch_id": new_uuid(), "is_alert": n != 1},
                "created_at": created,
                # The oldest two of each kind are read, so there is something to mark.
                "read_at": created + _HOUR_US if n < 2 else None,
            })
        for n, (kind, title, body, link) in enumerate(_INBOX[:inbox]):
            created = now_us - (inbox - n) * 2 * _HOUR_US - rng.randrange(_HOUR_US)
            items.append({
                "user_id": user_id, "organization_id": org_id, "kind": kind,
                "entity_type": kind.split(".")[0], "entity_id": f"{kind.split('.')[0]}_{n + 1}",
                "title": title, "body": body, "link": link, "metadata": {},
                "created_at": created, "read_at": created + _HOUR_US if n < 2 else None,
            })
    return sorted(items, key=lambda item: item["created_at"])


def seed() -> int:
    """Store the demo's notifications; return how many were stored."""
    return len(inserts.create_notifications(rows(stored.now_us())))


def count() -> int:
    """Return how many notifications the database holds."""
    return int(stats.stats(top=1)["total"])


def token_users(limit: int = 3) -> list[tuple[str, str | None]]:
    """Return up to ``limit`` users (with an organization where possible) to print tokens for.

    The demo users come first when they are stored; otherwise the newest users that have
    an organization, so that every printed curl line answers.
    """
    found: list[tuple[str, str | None]] = [
        (user_id, org_id) for user_id, org_id in USERS
        if reads.list_for_admin(user_id=user_id, organization_id=org_id, limit=1)
    ]
    if found:
        return found[:limit]
    newest = reads.list_for_admin(limit=500)
    with_org: dict[str, str] = {}
    for row in newest:
        if row["organization_id"]:
            with_org.setdefault(row["user_id"], row["organization_id"])
    users: list[tuple[str, str | None]] = list(with_org.items()) or [
        (user_id, None) for user_id in dict.fromkeys(r["user_id"] for r in newest)
    ]
    return users[:limit]
