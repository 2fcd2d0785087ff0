#!/usr/bin/env python3
"""Offline Kubernetes JSON schemas for kubeconform, from the OpenAPI v2 spec (swagger.json).

kubeconform downloads its schemas from the internet by default; this machine has no internet. The
Kubernetes OpenAPI spec ships inside the Go module k8s.io/kubernetes (api/openapi-spec/swagger.json),
which `go mod download` fetches through the Go module proxy. This script turns it into one standalone
schema per kind, named as kubeconform's -schema-location template expects:
    <out>/<kind lower-case><kind suffix>.json      e.g. deployment-apps-v1.json, service-v1.json
Each schema carries the definitions it references ("#/definitions/..."), and is strict like
kubectl's validation (additionalProperties: false on every object with properties), with
int-or-string and Quantity accepting strings and numbers, and null accepted where a value may be empty.

Also converts CustomResourceDefinition YAML files (--crd FILE...) to the same naming, so CRDs fetched
from Go modules (prometheus-operator, KEDA) can be validated too.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path


def kind_suffix(group: str, version: str) -> str:
    # Mirrors kubeconform pkg/registry schemaPath: "-" + first label of the group + "-" + version.
    if not group:
        return f"-{version.lower()}"
    return f"-{group.split('.')[0].lower()}-{version.lower()}"


def refs(node, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            found.add(ref[len("#/definitions/") :])
        for v in node.values():
            refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def closure(name: str, defs: dict) -> dict:
    todo, seen = [name], set()
    while todo:
        n = todo.pop()
        if n in seen or n not in defs:
            continue
        seen.add(n)
        found: set[str] = set()
        refs(defs[n], found)
        todo.extend(found - seen)
    return {n: defs[n] for n in sorted(seen)}


def strictify(node, in_properties: bool = False):
    """additionalProperties: false on objects with properties; int-or-string; nullable types."""
    if isinstance(node, list):
        return [strictify(x) for x in node]
    if not isinstance(node, dict):
        return node
    if in_properties:  # node maps property names to schemas: do not treat it as a schema
        return {k: strictify(v) for k, v in node.items()}
    if node.get("format") == "int-or-string":
        return {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}
    out = {}
    for k, v in node.items():
        if k in ("properties", "definitions", "patternProperties"):
            out[k] = strictify(v, in_properties=True)
        elif k in ("x-kubernetes-group-version-kind", "enum", "required", "x-kubernetes-list-map-keys"):
            out[k] = v
        else:
            out[k] = strictify(v)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    t = out.get("type")
    if isinstance(t, str) and t != "null":
        out["type"] = [t, "null"]
    return out


def from_swagger(swagger: Path, out: Path, kinds: set[str] | None) -> int:
    spec = json.loads(swagger.read_text())
    defs = copy.deepcopy(spec["definitions"])
    defs["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {
        "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]
    }
    defs = {n: strictify(d) for n, d in defs.items()}
    written = 0
    for name, d in defs.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            kind = gvk["kind"]
            if kinds and kind not in kinds:
                continue
            if kind.endswith("List") or kind in ("WatchEvent", "DeleteOptions", "Status"):
                continue
            schema = {k: v for k, v in d.items()}
            schema["$schema"] = "http://json-schema.org/draft-04/schema#"
            schema["definitions"] = {n: v for n, v in closure(name, defs).items() if n != name}
            # A self-referencing kind (e.g. JSONSchemaProps) needs itself in definitions too.
            found: set[str] = set()
            refs(schema, found)
            if name in found:
                schema["definitions"][name] = d
            path = out / f"{kind.lower()}{kind_suffix(gvk['group'], gvk['version'])}.json"
            path.write_text(json.dumps(schema, separators=(",", ":")))
            written += 1
    return written


def from_crd(crd_file: Path, out: Path) -> int:
    import yaml  # PyYAML: only needed for CRDs

    written = 0
    for doc in yaml.safe_load_all(crd_file.read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
        for ver in doc["spec"]["versions"]:
            schema = ver.get("schema", {}).get("openAPIV3Schema")
            if not schema:
                continue
            schema = strictify(copy.deepcopy(schema))
            schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            path = out / f"{kind.lower()}{kind_suffix(group, ver['name'])}.json"
            path.write_text(json.dumps(schema, separators=(",", ":")))
            written += 1
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swagger", type=Path, help="Kubernetes api/openapi-spec/swagger.json")
    ap.add_argument("--crd", type=Path, nargs="*", default=[], help="CustomResourceDefinition YAML files")
    ap.add_argument("--kinds", default="", help="comma-separated kinds to write (default: all)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    kinds = {k for k in args.kinds.split(",") if k} or None
    n = from_swagger(args.swagger, args.out, kinds) if args.swagger else 0
    for f in args.crd:
        n += from_crd(f, args.out)
    print(f"wrote {n} schemas to {args.out}")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
