"""A user's preferences: the kinds and datasets they muted (pure: no database, no framework).

Ingest and ``notifications send`` do not store a notification that a mute of its user
matches, unless the item is critical. A muted kind is a ``kind`` value as version 2's
filter takes it (:mod:`notifications.core.kinds`): an exact kind, or a prefix pattern
such as ``review.*``, matched the same way, byte for byte. A muted dataset is a dataset
id; it matches the notifications about that dataset.

Preferences are per user, whatever the organization: a mute says what the person does not
want to hear about, and a user's organizations share one inbox in version 2 anyway.

The lists are kept as given, in order, with repeats dropped (datasets as lower-case UUID
text), so that a client reads back what it stored; matching goes through
:class:`~notifications.core.kinds.KindFilter`, which also folds ``review.x`` into
``review.*``.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from notifications.core.kinds import KindFilter, parse_kinds

#: Most entries in each list.
MAX_MUTES = 100

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Preferences:
    """What one user muted: kinds (exact or ``prefix.*``) and dataset ids."""

    muted_kinds: tuple[str, ...] = ()
    muted_datasets: tuple[str, ...] = ()
    _kinds: KindFilter = field(init=False, repr=False, compare=False)
    _datasets: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "muted_kinds", _unique(self.muted_kinds))
        object.__setattr__(self, "muted_datasets",
                           _unique(d.lower() for d in self.muted_datasets))
        if len(self.muted_kinds) > MAX_MUTES or len(self.muted_datasets) > MAX_MUTES:
            raise ValueError(f"at most {MAX_MUTES} muted kinds and at most {MAX_MUTES} muted "
                             "datasets may be stored")
        object.__setattr__(self, "_kinds", parse_kinds(self.muted_kinds, limit=MAX_MUTES))
        object.__setattr__(self, "_datasets", frozenset(self.muted_datasets))

    @property
    def empty(self) -> bool:
        """True when nothing is muted."""
        return not self.muted_kinds and not self.muted_datasets

    def mutes(self, kind: str | None, dataset_id: str | None) -> bool:
        """Tell whether a notification of ``kind`` about ``dataset_id`` is muted."""
        if dataset_id is not None and dataset_id in self._datasets:
            return True
        # An empty KindFilter lets every kind through: no muted kind must mute nothing.
        return bool(self.muted_kinds) and self._kinds.matches(kind)

    def changed(self, *, mute_kinds: Iterable[str] = (), unmute_kinds: Iterable[str] = (),
                mute_datasets: Iterable[str] = (),
                unmute_datasets: Iterable[str] = ()) -> Preferences:
        """Return these preferences with entries added (at the end) and removed.

        Raises ``ValueError`` (:class:`~notifications.core.kinds.KindError` for a kind)
        when a list would grow past :data:`MAX_MUTES` or a kind is not acceptable.
        """
        drop_kinds = set(unmute_kinds)
        drop_datasets = {d.lower() for d in unmute_datasets}
        return Preferences(
            tuple(k for k in (*self.muted_kinds, *mute_kinds) if k not in drop_kinds),
            tuple(d for d in (*self.muted_datasets, *(d.lower() for d in mute_datasets))
                  if d not in drop_datasets),
        )

    def as_dict(self) -> dict[str, Any]:
        """The body of ``GET /api/v2/preferences`` (and of the command's ``--json``)."""
        return {"muted_kinds": list(self.muted_kinds),
                "muted_datasets": list(self.muted_datasets)}

    def stored(self) -> tuple[str, str]:
        """The two lists as stored: JSON arrays of text."""
        return _dumps(list(self.muted_kinds)), _dumps(list(self.muted_datasets))


#: Nothing muted (a user without stored preferences).
NONE = Preferences()


@lru_cache(maxsize=4096)
def from_stored(kinds: str, datasets: str) -> Preferences:
    """Return the preferences of the stored JSON texts (cached: ingest reads them often)."""
    return Preferences(tuple(json.loads(kinds)), tuple(json.loads(datasets)))
