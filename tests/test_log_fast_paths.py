"""The request log's shortcuts give exactly what the full redaction gives."""
from __future__ import annotations

import random
import string
import time
from datetime import UTC, datetime

import pytest

from notifications.http import request_log as web

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9."
       "c2lnbmF0dXJlLXRoYXQtaXMtbG9uZy1lbm91Z2g")


@pytest.mark.parametrize("path", [
    "/api/v1/notifications/unread-count",
    "/api/v1/notifications/e94ab07e-c0fe-4db1-83d0-34ea0fd8ee57/read",
    f"/api/v1/notifications/{JWT}/read", "/x/" + "k" * 60, "/a\nb c", "/é", "/eyJabc", "/%41",
    "/" + "a" * 9000, "/api/v1/s3cr3t-value/read", "/a:b@c!$&'()*+,;=~",
])
def test_log_path_is_safe_path(path: str) -> None:
    for secrets in ([], ["s3cr3t-value"], ["abc"], [JWT]):
        assert web._log_path(path, secrets) == web.safe_path(path, secrets)


def test_log_path_on_random_paths() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "/-_.~:@=%?#é\n "
    for _ in range(20_000):
        path = "/" + "".join(rng.choice(alphabet) for _ in range(rng.randrange(80)))
        secrets = [path[1:1 + rng.randrange(8)]]
        assert web._log_path(path, secrets) == web.safe_path(path, secrets)


def test_log_time_matches_isoformat() -> None:
    before = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    logged = web._log_time()
    after = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert before <= logged <= after and len(logged) == len(before)
    time.sleep(0.002)
    assert web._log_time() >= logged
