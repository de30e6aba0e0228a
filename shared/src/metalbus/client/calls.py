"""One API request as data: a :class:`Route` (what the API offers) and a :class:`Call`.

Every request the clients send is a :class:`Call` built by :mod:`.ops`; both clients (sync
and async) only send calls, so the requests are described once. A call can send only the
query parameters its route declares, and the routes are checked against the API's OpenAPI
document by the tests: what the client sends is what the API takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

T = TypeVar("T")
# Building an adapter costs far more than using one: one per response type.
_adapter = lru_cache(maxsize=None)(TypeAdapter)


@dataclass(frozen=True)
class Route:
    """A route of the API: ``GET /api/v1/fabrics/{id}``, its query parameters and body."""

    method: str
    path: str
    query: tuple[str, ...] = ()
    body: type[BaseModel] | tuple[str, ...] | None = None
    headers: tuple[str, ...] = ()

    def body_fields(self) -> tuple[str, ...]:
        """The names of the body's fields (a model's, or the ones given)."""
        if isinstance(self.body, type):
            return tuple(f.alias or n for n, f in self.body.model_fields.items())
        return self.body or ()


def query_of(model: type[BaseModel]) -> tuple[str, ...]:
    """The query parameter names of a route whose query is ``model``."""
    return tuple(f.alias or name for name, f in model.model_fields.items())


def to_json(body: BaseModel | Mapping[str, Any] | None) -> Any:
    """A body as JSON: a model sends only the fields that were set (so an update changes
    only what the caller named); a mapping goes as it is, for the API to validate."""
    if body is None or not isinstance(body, BaseModel):
        return None if body is None else dict(body)
    return body.model_dump(mode="json", exclude_unset=True)


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request ready to send, and how to read its answer (``response`` None: no body)."""

    route: Route
    response: Any
    path_params: Mapping[str, Any] = field(default_factory=dict)
    query: Mapping[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.query) - set(self.route.query)
        if unknown:
            raise TypeError(f"{self.route.path} takes no query parameter {sorted(unknown)}")

    @property
    def url(self) -> str:
        return self.route.path.format(
            **{k: quote(str(v), safe="") for k, v in self.path_params.items()}
        )

    def params(self) -> list[tuple[str, str]]:
        """The query string: None left out, lists repeated, booleans as true/false."""
        pairs: list[tuple[str, str]] = []
        for key, value in self.query.items():
            for one in value if isinstance(value, list | tuple) else [value]:
                if one is None:
                    continue
                pairs.append((key, str(one).lower() if isinstance(one, bool) else str(one)))
        return pairs

    def parse(self, content: Any) -> T:
        if self.response is None:
            return None  # type: ignore[return-value]
        return _adapter(self.response).validate_python(content)  # type: ignore[no-any-return]
