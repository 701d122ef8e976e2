"""Validates ServiceMonitor and PodMonitor manifests offline, against the Prometheus Operator's
CRD schema as the PyPI package cloudcoil-models-prometheus-operator generates it (pydantic
models made from the operator's CRDs, monitoring.coreos.com/v1).

kubernetes-validate has no schema for these kinds: it only warns and passes them. Here every
document must (1) parse into the model of its kind, which checks the types, enums and required
fields of the CRD's openAPIV3Schema, and (2) come back unchanged when the model is dumped,
which catches what pydantic would silently drop: a misspelled or unknown field.

Usage: python validate_monitors.py FILE...; prints one line per document; exit 1 on any error.
"""

import sys

import yaml
from cloudcoil.models.prometheus_operator import v1

KINDS = {"ServiceMonitor": v1.ServiceMonitor, "PodMonitor": v1.PodMonitor}


def dropped(given, kept, path=""):
    """Paths present in `given` but not in `kept` (or changed)."""
    if isinstance(given, dict):
        out = []
        for k, v in given.items():
            if not isinstance(kept, dict) or k not in kept:
                out.append(f"{path}.{k}")
            else:
                out += dropped(v, kept[k], f"{path}.{k}")
        return out
    if isinstance(given, list):
        if not isinstance(kept, list) or len(kept) != len(given):
            return [path]
        return [p for i, (g, k) in enumerate(zip(given, kept)) for p in dropped(g, k, f"{path}[{i}]")]
    return [] if given == kept else [f"{path} ({given!r} became {kept!r})"]


def main(files):
    rc = 0
    for name in files:
        with open(name) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            kind = doc.get("kind")
            what = f"{name} {kind}/{doc.get('metadata', {}).get('name')}"
            model = KINDS.get(kind)
            if model is None or doc.get("apiVersion") != "monitoring.coreos.com/v1":
                print(f"ERROR {what}: not a monitoring.coreos.com/v1 ServiceMonitor or PodMonitor")
                rc = 1
                continue
            try:
                parsed = model.model_validate(doc)
            except Exception as e:  # pydantic.ValidationError, with every failing path
                print(f"ERROR {what}: {e}")
                rc = 1
                continue
            back = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
            lost = dropped(doc, back)
            if lost:
                print(f"ERROR {what}: not in the CRD schema: {', '.join(lost)}")
                rc = 1
                continue
            print(f"INFO {what} passed against the monitoring.coreos.com/v1 {kind} schema")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
