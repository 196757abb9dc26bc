"""Which rows a caller sees: :class:`Scope`, and the one WHERE clause built from it.

A :class:`Scope` is an API caller's (a user, and a rule for organizations); an
:class:`AdminFilter` is what the admin commands select by (a user, an organization, both or
neither). Every statement that reads or marks "the rows of this caller" (the lists, counts
and marks of both APIs, the streams' replay and unread counts, the admin commands' list,
``tail``, ``mark-read`` and ``export``) takes its conditions from :func:`where_sql` and its
parameters from :func:`where_params`, so the rule is written once.

The conditions are plain SQL with ``?`` placeholders, built once per shape of scope and
cached: building, cache-keying and compiling a Core statement costs more than SQLite takes
to run one of these (about 0.3 ms against 0.03 ms for an unread count). Each condition
names a bare column (``user_id = ?``, ``read_at IS NULL``), which is what the indexes of
``schema.sql`` are laid out for.
"""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

from notifications.core.kinds import KindFilter, prefix_range


class Orgs(Enum):
    """Which organizations' rows a scope sees."""

    #: Rows of every organization and of none.
    ANY = "any"
    #: Rows of :attr:`Scope.organization_id` alone (of no organization when it is None).
    ONE = "one"
    #: Rows of :attr:`Scope.organization_id` and rows of no organization.
    ONE_OR_NONE = "one-or-none"


#: What the SQL of a scope depends on: whether it names a user, its rule for organizations,
#: and whether it names an organization (a cache key; the values go in as parameters).
Shape = tuple[bool, Orgs, bool]


@dataclass(frozen=True)
class Scope:
    """The rows a caller of the APIs may see and touch: one user's, by organization.

    The APIs build it with :meth:`dataset_api` or :meth:`organization_api`.
    """

    #: The user whose rows these are.
    user_id: str
    _: KW_ONLY
    #: Which of the user's rows, by :attr:`organization_id`.
    orgs: Orgs = Orgs.ANY
    #: The organization :attr:`orgs` refers to (always None with :attr:`Orgs.ANY`).
    organization_id: str | None = None

    def __post_init__(self) -> None:
        if self.orgs is Orgs.ANY and self.organization_id is not None:
            raise ValueError("a scope of every organization names none")
        if self.orgs is Orgs.ONE_OR_NONE and self.organization_id is None:
            raise ValueError("a scope of one organization or none needs the organization")

    @classmethod
    def dataset_api(cls, user_id: str, organization_id: str | None = None) -> Scope:
        """The dataset variant's caller: their rows; with an organization in the token, only
        the rows of that organization or of none."""
        if organization_id is None:
            return cls(user_id)
        return cls(user_id, orgs=Orgs.ONE_OR_NONE, organization_id=organization_id)

    @classmethod
    def organization_api(cls, user_id: str, organization_id: str) -> Scope:
        """The organization variant's caller: exactly their rows in their organization."""
        return cls(user_id, orgs=Orgs.ONE, organization_id=organization_id)

    @property
    def shape(self) -> Shape:
        """Return what the scope's SQL depends on (see :data:`Shape`)."""
        return (True, self.orgs, self.organization_id is not None)


@dataclass(frozen=True)
class AdminFilter:
    """The admin commands' filters: the rows of a user, of an organization, or of both.

    Unlike a :class:`Scope` it may name no user (every user's rows), and an organization it
    names is matched exactly.
    """

    #: Only this user's rows; None: every user's.
    user_id: str | None = None
    #: Only this organization's rows; None: every organization's and none.
    organization_id: str | None = None

    @property
    def orgs(self) -> Orgs:
        """Return the rule for organizations: :attr:`Orgs.ONE` when one is named."""
        return Orgs.ANY if self.organization_id is None else Orgs.ONE

    @property
    def shape(self) -> Shape:
        """Return what the filter's SQL depends on (see :data:`Shape`)."""
        return (self.user_id is not None, self.orgs, self.organization_id is not None)


@lru_cache(maxsize=None)
def where_sql(shape: Shape, dataset: bool = False, unread: bool = False) -> str:
    """Return the conditions of the rows a scope of ``shape`` sees, ``?`` placeholders.

    ``dataset`` adds one dataset's rows only, ``unread`` unread rows only. The parameters
    are :func:`where_params` of the same scope and dataset, in that order.
    """
    user, orgs, org = shape
    parts = ["user_id = ?"] if user else []
    if orgs is Orgs.ONE:
        parts.append("organization_id = ?" if org else "organization_id IS NULL")
    elif orgs is Orgs.ONE_OR_NONE:
        parts.append("(organization_id IS NULL OR organization_id = ?)")
    if dataset:
        parts.append("dataset_id = ?")
    if unread:
        parts.append("read_at IS NULL")
    return " AND ".join(parts) if parts else "1 = 1"


def where_params(scope: Scope | AdminFilter, dataset_id: str | None = None) -> tuple[Any, ...]:
    """Return the parameters of :func:`where_sql` for ``scope`` (and ``dataset_id``)."""
    params: tuple[Any, ...] = () if scope.user_id is None else (scope.user_id,)
    if scope.organization_id is not None:
        params += (scope.organization_id,)
    return params if dataset_id is None else params + (dataset_id,)


#: What the SQL of a kind filter depends on: how many exact kinds and how many prefixes.
KindShape = tuple[int, int]


def kind_shape(kinds: KindFilter) -> KindShape:
    """Return what :func:`kind_sql` of ``kinds`` depends on (a cache key)."""
    return (len(kinds.exact), len(kinds.prefixes))


@lru_cache(maxsize=None)
def kind_sql(shape: KindShape) -> str:
    """Return the condition of a kind filter of ``shape``; empty for every kind.

    Exact kinds are ``kind IN (...)``, a prefix is the byte range of
    :func:`kinds.prefix_range` (``kind >= ? AND kind < ?``): case-sensitive, as
    :meth:`KindFilter.matches` is, and usable by an index, unlike SQLite's ``LIKE``. The
    parameters are :func:`kind_params` of the same filter.
    """
    exact, prefixes = shape
    parts = []
    if exact:
        parts.append("kind = ?" if exact == 1 else f"kind IN ({', '.join('?' * exact)})")
    parts += ["(kind >= ? AND kind < ?)"] * prefixes
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def kind_params(kinds: KindFilter) -> tuple[Any, ...]:
    """Return the parameters of :func:`kind_sql` for ``kinds``."""
    params: tuple[Any, ...] = tuple(kinds.exact)
    for prefix in kinds.prefixes:
        params += prefix_range(prefix)
    return params
