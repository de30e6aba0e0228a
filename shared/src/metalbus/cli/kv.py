"""MAAS-style ``key=value`` arguments: ``metalbus admin pod update 3 host=10.0.0.2 tags=a,b``.

- a key given twice makes a list (``tags=a tags=b``); for a list field a comma splits too;
- a dotted key nests (``settings.password=secret`` for a BMC's driver settings);
- an empty value is null (``zone=`` clears the zone); ``[...]``/``{...}`` values are JSON;
- everything else goes as a string: the API converts ``cores=2`` and ``start=true`` by the
  field's type and names the field at fault when it cannot.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from .output import Fail


def parse(
    args: Iterable[str] | None,
    model: type[BaseModel] | None = None,
    *,
    aliases: Mapping[str, str] | None = None,
    allowed: Iterable[str] | None = None,
    lists: Iterable[str] = (),
) -> dict[str, Any]:
    """The body (or query) the arguments spell; ``aliases`` renames keys (MAAS spellings),
    ``allowed`` refuses keys outside it (query filters, which the API would ignore),
    ``lists`` names list fields when there is no ``model`` to tell."""
    found: dict[str, Any] = {}
    allowed = set(allowed) if allowed is not None else None
    for arg in args or ():
        key, sep, text = arg.partition("=")
        if not sep or not key:
            raise Fail(f"{arg!r}: expected key=value", usage=True)
        key = (aliases or {}).get(key, key)
        if allowed is not None and key.split(".")[0] not in allowed:
            raise Fail(f"{key}: not one of {', '.join(sorted(allowed))}", usage=True)
        value = _value(text, arg)
        *parents, leaf = key.split(".")
        target = found
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise Fail(f"{key}: {part} is given both as a value and as a group", usage=True)
        if leaf in target:
            before = target[leaf]
            target[leaf] = [*(before if isinstance(before, list) else [before]), value]
        else:
            target[leaf] = value
    listed = set(lists)
    if model is not None:
        listed |= {n for n, f in model.model_fields.items() if _is_list(f.annotation)}
    for name in listed:
        if isinstance(found.get(name), str):
            found[name] = [part for part in found[name].split(",") if part]
    return found


def _value(text: str, arg: str) -> Any:
    if text == "":
        return None
    if text[0] in "[{":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise Fail(f"{arg!r}: the value is not valid JSON ({exc})", usage=True) from exc
    return text


def _is_list(annotation: Any) -> bool:
    """list[...] itself, or inside Optional/Annotated."""
    origin = get_origin(annotation)
    if origin is list:
        return True
    if origin in (Union, types.UnionType, Annotated):
        return any(_is_list(a) for a in get_args(annotation))
    return False
