"""A small renderer of the kustomize features deploy/k8s uses, for the tests.

No kustomize binary can be installed from the package registries here, so the tests build
the overlays themselves: ``resources`` (files and kustomization folders), ``namespace``,
``labels`` (metadata labels only, as without ``includeSelectors``), ``images``, ``replicas``
and ``patches`` given by ``path`` (strategic merge: maps merge, lists of maps with a ``name``
merge by name, other lists are replaced). A kustomization using anything else is refused, so
the manifests cannot drift into features this renderer would silently get wrong.
``helmCharts`` are returned as they are (the chart itself cannot be fetched here).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "replicas",
    "patches",
    "helmCharts",
}
# Kinds kustomize's namespace transformer leaves alone (cluster-scoped).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


@dataclass
class Rendered:
    """The objects of one kustomization and the Helm charts it references."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    helm_charts: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
        return found[0]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        return None


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a file."""
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def render(folder: Path) -> Rendered:
    """Build the kustomization in ``folder``."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED
    assert not unknown, f"{folder}: kustomize fields the test renderer does not know: {unknown}"
    out = Rendered()
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            inner = render(path)
            out.objects.extend(inner.objects)
            out.helm_charts.extend(inner.helm_charts)
        else:
            out.objects.extend(load_documents(path))
    out.helm_charts.extend((folder, chart) for chart in spec.get("helmCharts", []))
    for patch in spec.get("patches", []):
        assert set(patch) == {"path"}, f"{folder}: only path patches are supported: {patch}"
        for doc in load_documents(folder / patch["path"]):
            target = out.get(doc["kind"], doc["metadata"]["name"])
            merged = strategic_merge(target, doc)
            target.clear()
            target.update(merged)
    for item in spec.get("replicas", []):
        matches = [
            o
            for o in out.objects
            if o["metadata"]["name"] == item["name"] and "replicas" in o.get("spec", {})
        ]
        assert matches, f"{folder}: replicas for unknown {item['name']}"
        for obj in matches:
            obj["spec"]["replicas"] = item["count"]
    for image in spec.get("images", []):
        _set_image(out.objects, image)
    pairs = {k: v for entry in spec.get("labels", []) for k, v in entry["pairs"].items()}
    for obj in out.objects:
        if pairs:
            obj["metadata"].setdefault("labels", {}).update(pairs)
        if "namespace" in spec and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = spec["namespace"]
    return out


def strategic_merge(base: Any, patch: Any) -> Any:
    """``patch`` laid over ``base`` the way a strategic-merge patch of these kinds is."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        merged_list = copy.deepcopy(base)
        for item in patch:
            same = [i for i, old in enumerate(merged_list) if old["name"] == item["name"]]
            if same:
                merged_list[same[0]] = strategic_merge(merged_list[same[0]], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return all(isinstance(i, dict) and "name" in i for i in items)


def _set_image(objects: list[dict[str, Any]], image: dict[str, str]) -> None:
    for container in all_containers(objects):
        name, _, _ = container["image"].partition(":")
        if name == image["name"]:
            new_name = image.get("newName", name)
            container["image"] = f"{new_name}:{image['newTag']}" if "newTag" in image else new_name


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template's spec of a workload, else None."""
    template = obj.get("spec", {}).get("template")
    return template["spec"] if template else None


def all_containers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every container of every workload."""
    out = []
    for obj in objects:
        spec = pod_spec(obj)
        if spec:
            out.extend(spec.get("containers", []) + spec.get("initContainers", []))
    return out
