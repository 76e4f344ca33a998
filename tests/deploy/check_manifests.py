#!/usr/bin/env python3
"""Every YAML file under deploy/ parses, every Kubernetes manifest carries the keys Kubernetes
requires for its kind, the pieces refer to each other correctly (selectors, named ports,
volumes, the kustomization's files), and the ConfigMap's config passes stagegate --check-config.

usage: check_manifests.py SOURCE_DIR STAGEGATE_BINARY
"""
import json
import pathlib
import subprocess
import sys
import tempfile

import yaml

src = pathlib.Path(sys.argv[1])
stagegate = sys.argv[2]
problems = []


def need(doc, path, where):
    """The value at a dotted path, recording a problem when it is missing or empty."""
    node = doc
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node or node[key] in (None, "", [], {}):
            problems.append(f"{where}: missing {path}")
            return None
        node = node[key]
    return node


for path in sorted((src / "deploy").rglob("*.y*ml")):
    try:
        list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as e:
        problems.append(f"{path}: does not parse: {e}")

k8s = src / "deploy" / "kubernetes"
docs = []
for path in sorted(k8s.glob("*.yaml")):
    if path.name == "kustomization.yaml":
        continue
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            docs.append((path.name, doc))

required = {
    "Namespace": [],
    "ConfigMap": ["data"],
    "Secret": [],
    "PersistentVolumeClaim": ["spec.accessModes", "spec.resources.requests.storage"],
    "Deployment": ["spec.selector.matchLabels", "spec.template.metadata.labels",
                   "spec.template.spec.containers"],
    "Service": ["spec.selector", "spec.ports"],
    "PodDisruptionBudget": ["spec.selector.matchLabels"],
    "ServiceMonitor": ["spec.selector.matchLabels", "spec.endpoints"],
}
by_kind = {}
for name, doc in docs:
    where = f"{name} {doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
    for key in ("apiVersion", "kind", "metadata.name"):
        need(doc, key, where)
    kind = doc.get("kind")
    if kind not in required:
        problems.append(f"{where}: unexpected kind {kind}")
        continue
    for key in required[kind]:
        need(doc, key, where)
    by_kind.setdefault(kind, []).append(doc)

if "Secret" in by_kind:
    for s in by_kind["Secret"]:
        if not s.get("data") and not s.get("stringData"):
            problems.append("Secret: needs data or stringData")
for pdb in by_kind.get("PodDisruptionBudget", []):
    if ("minAvailable" in pdb["spec"]) == ("maxUnavailable" in pdb["spec"]):
        problems.append("PodDisruptionBudget: needs exactly one of minAvailable, maxUnavailable")

deployment = (by_kind.get("Deployment") or [None])[0]
if deployment:
    spec = deployment["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    if not set(spec["selector"]["matchLabels"].items()) <= set(pod_labels.items()):
        problems.append("Deployment: selector does not match the pod template's labels")
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    for key in ("name", "image"):
        need(container, key, "Deployment container")
    port_names = {p.get("name") for p in container.get("ports", [])}
    probes = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in probes.items():
        got = (container.get(probe) or {}).get("httpGet", {})
        if got.get("path") != path:
            problems.append(f"Deployment: {probe} must GET {path}")
    for key in ("resources.requests.cpu", "resources.requests.memory", "resources.limits.memory"):
        need(container, key, "Deployment container")
    sc = container.get("securityContext") or {}
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("Deployment: the root filesystem must be read-only")
    if (pod.get("securityContext") or {}).get("runAsNonRoot") is not True:
        problems.append("Deployment: must run as non-root")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    for m in mounts:
        if m not in volumes:
            problems.append(f"Deployment: volumeMount {m} has no volume")
    if "persistentVolumeClaim" not in volumes.get("state", {}):
        problems.append("Deployment: the state directory must be on a persistent volume")
    claims = {d["metadata"]["name"] for d in by_kind.get("PersistentVolumeClaim", [])}
    configmaps = {d["metadata"]["name"] for d in by_kind.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"] for d in by_kind.get("Secret", [])}
    for v in volumes.values():
        if "persistentVolumeClaim" in v and v["persistentVolumeClaim"]["claimName"] not in claims:
            problems.append(f"Deployment: volume {v['name']} names an unknown claim")
        if "configMap" in v and v["configMap"]["name"] not in configmaps:
            problems.append(f"Deployment: volume {v['name']} names an unknown ConfigMap")
        if "secret" in v and v["secret"]["secretName"] not in secrets:
            problems.append(f"Deployment: volume {v['name']} names an unknown Secret")
    for svc in by_kind.get("Service", []):
        if not set(svc["spec"]["selector"].items()) <= set(pod_labels.items()):
            problems.append(f"Service {svc['metadata']['name']}: selector matches no pod")
        for p in svc["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in port_names:
                problems.append(f"Service {svc['metadata']['name']}: targetPort {p['targetPort']} "
                                "is not a container port")
    for sm in by_kind.get("ServiceMonitor", []):
        sel = set(sm["spec"]["selector"]["matchLabels"].items())
        targets = [s for s in by_kind.get("Service", [])
                   if sel <= set(s["metadata"].get("labels", {}).items())]
        if len(targets) != 1:
            problems.append("ServiceMonitor: must select exactly one Service")
        else:
            names = {p.get("name") for p in targets[0]["spec"]["ports"]}
            for e in sm["spec"]["endpoints"]:
                if e.get("port") not in names:
                    problems.append(f"ServiceMonitor: port {e.get('port')} not on the Service")

    # The config the pod runs must be valid and point where the volumes are mounted.
    for cm in by_kind.get("ConfigMap", []):
        for key, text in cm["data"].items():
            if not key.endswith(".json"):
                continue
            # The token files exist only in the pod (from the Secret): stand-ins for the check.
            checked = json.loads(text)
            tmp = tempfile.mkdtemp()
            for token in checked.get("admin", {}).get("tokens", []):
                stand_in = pathlib.Path(tmp) / pathlib.PurePath(token["file"]).name
                stand_in.write_text("stand-in-token-0123456789\n")
                token["file"] = str(stand_in)
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(checked, f)
            r = subprocess.run([stagegate, "--check-config", f.name], capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"ConfigMap {key}: {r.stdout}{r.stderr}")
                continue
            cfg = json.loads(text)
            if cfg.get("state", {}).get("dir") != mounts.get("state"):
                problems.append(f"ConfigMap {key}: state.dir is not the state volume's mountPath")
            for token in cfg.get("admin", {}).get("tokens", []):
                if not token["file"].startswith(mounts.get("tokens", "//") + "/"):
                    problems.append(f"ConfigMap {key}: token file {token['file']} is not on the "
                                    "tokens volume")
            secret_keys = set()
            for s in by_kind.get("Secret", []):
                secret_keys |= set((s.get("stringData") or {}).keys()) | set((s.get("data") or {}).keys())
            for token in cfg.get("admin", {}).get("tokens", []):
                if pathlib.PurePath(token["file"]).name not in secret_keys:
                    problems.append(f"ConfigMap {key}: no Secret key for token file {token['file']}")
            args = " ".join(container.get("args", []))
            if pathlib.PurePath(mounts.get("config", "")) / key not in \
                    [pathlib.PurePath(a) for a in container.get("args", [])]:
                problems.append(f"Deployment: args ({args}) do not run the ConfigMap's {key}")

kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
listed = set(kustomization.get("resources", []))
on_disk = {p.name for p in k8s.glob("*.yaml")} - {"kustomization.yaml"}
for missing in sorted(listed - on_disk):
    problems.append(f"kustomization: lists {missing}, which does not exist")
for unlisted in sorted(on_disk - listed):
    problems.append(f"kustomization: does not list {unlisted}")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"deploy/: {len(docs)} Kubernetes manifests and every YAML file check out")
