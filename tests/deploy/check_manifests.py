#!/usr/bin/env python3
"""Every YAML file under deploy/ parses, every Kubernetes manifest carries the keys Kubernetes
requires for its kind, the pieces refer to each other correctly (selectors, named ports,
volumes, the kustomization's files), the ConfigMap's config passes stagegate --check-config,
and the Secret's shipped placeholder tokens do not (the gateway refuses to start with them).
The Prometheus Operator's kinds are an optional component (components/monitoring), off in the
base, whose PrometheusRule holds the same rules as deploy/prometheus/. Where kubectl is
installed, `kubectl kustomize` builds the base without them and with the component.

usage: check_manifests.py SOURCE_DIR STAGEGATE_BINARY
"""
import json
import pathlib
import re
import shutil
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
components = k8s / "components"
operator_kinds = {"ServiceMonitor", "PrometheusRule"}
docs = []
base_kinds = set()
for path in sorted(k8s.glob("*.yaml")) + sorted(components.glob("*/*.yaml")):
    if path.name == "kustomization.yaml":
        continue
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            docs.append((str(path.relative_to(k8s)), doc))
            if path.parent == k8s:
                base_kinds.add(doc.get("kind"))
for kind in sorted(base_kinds & operator_kinds):
    problems.append(f"the base holds a {kind}: Prometheus Operator kinds belong in "
                    "components/monitoring (apply -k fails on clusters without the CRDs)")

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
    "PrometheusRule": ["spec.groups"],
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
            # The alerts name the job (up{job="stagegate"}); the operator's job label is the
            # Service's name unless jobLabel names a label of the Service.
            alerts = (src / "deploy" / "prometheus" / "stagegate-alerts.yml").read_text()
            jobs = set(re.findall(r'job="([^"]+)"', alerts))
            label = sm["spec"].get("jobLabel")
            job = targets[0]["metadata"].get("labels", {}).get(label) if label else \
                targets[0]["metadata"]["name"]
            if jobs and jobs != {job}:
                problems.append(f"ServiceMonitor: scrapes as job {job!r}, the alerts expect "
                                f"{sorted(jobs)}")

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
            # As shipped, with the Secret's own values: refused, naming each placeholder.
            shipped = {}
            for sec in by_kind.get("Secret", []):
                shipped.update(sec.get("stringData") or {})
            for token in checked.get("admin", {}).get("tokens", []):
                name = pathlib.PurePath(token["file"]).name
                if name in shipped:
                    pathlib.Path(token["file"]).write_text(shipped[name] + "\n")
            with open(f.name, "w") as again:
                json.dump(checked, again)
            r = subprocess.run([stagegate, "--check-config", f.name], capture_output=True, text=True)
            refused = r.stdout + r.stderr
            if r.returncode != 1 or refused.count("holds a placeholder") != len(shipped):
                problems.append(f"ConfigMap {key} with the Secret's shipped tokens: --check-config "
                                f"must refuse each placeholder (exit {r.returncode}):\n{refused}")
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


def check_listing(directory, where):
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", []))
    on_disk = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    for missing in sorted(listed - on_disk):
        problems.append(f"{where}: lists {missing}, which does not exist")
    for unlisted in sorted(on_disk - listed):
        problems.append(f"{where}: does not list {unlisted}")
    return kustomization


base = check_listing(k8s, "kustomization")
if base.get("components"):
    problems.append("kustomization: components are optional, off in the base (a cluster without "
                    "the Prometheus Operator's CRDs refuses their kinds)")
monitoring = components / "monitoring"
component = check_listing(monitoring, "components/monitoring/kustomization")
if component.get("kind") != "Component" or \
        component.get("apiVersion") != "kustomize.config.k8s.io/v1alpha1":
    problems.append("components/monitoring: must be a kustomize Component "
                    "(kustomize.config.k8s.io/v1alpha1)")
if "#   - components/monitoring" not in (k8s / "kustomization.yaml").read_text():
    problems.append("kustomization: the commented line that turns components/monitoring on "
                    "is missing")
# The PrometheusRule holds exactly the rule files' groups (scripts/gen-prometheusrule.py).
groups = []
for name in ("stagegate-rules.yml", "stagegate-alerts.yml"):
    groups += yaml.safe_load((src / "deploy" / "prometheus" / name).read_text())["groups"]
rules = by_kind.get("PrometheusRule", [])
if len(rules) != 1 or rules[0]["spec"]["groups"] != groups:
    problems.append("components/monitoring/prometheusrule.yaml differs from "
                    "deploy/prometheus/stagegate-{rules,alerts}.yml: run "
                    "scripts/gen-prometheusrule.py")

# What kustomize itself builds, where kubectl (with kustomize v4 or later) is installed.
built = "kubectl not installed: kustomize builds not checked"
kubectl = shutil.which("kubectl")
if kubectl:
    # Components need kustomize v3.7; kubectl embeds v4 from 1.21 and names it from 1.24 on.
    v = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout
    m = re.search(r"Kustomize Version: v(\d+)", v)
    if not m or int(m.group(1)) < 4:
        kubectl = None
        built = "kubectl without kustomize v4 or later: kustomize builds not checked"
if kubectl:
    def kinds_built(directory):
        r = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"kubectl kustomize {directory}: {r.stderr.strip()}")
            return set()
        return {d.get("kind") for d in yaml.safe_load_all(r.stdout) if d}
    plain = kinds_built(k8s)
    if plain & operator_kinds:
        problems.append(f"kubectl kustomize deploy/kubernetes builds {sorted(plain & operator_kinds)}")
    with tempfile.TemporaryDirectory() as tmp:
        copy = pathlib.Path(tmp) / "kubernetes"
        shutil.copytree(k8s, copy)
        text = (copy / "kustomization.yaml").read_text()
        text = text.replace("# components:", "components:").replace(
            "#   - components/monitoring", "  - components/monitoring")
        (copy / "kustomization.yaml").write_text(text)
        with_monitoring = kinds_built(copy)
    if not operator_kinds <= with_monitoring or not plain <= with_monitoring:
        problems.append("kubectl kustomize with components/monitoring on: builds "
                        f"{sorted(with_monitoring)}")
    built = (f"kubectl kustomize: {len(plain)} kinds in the base, "
             f"{len(with_monitoring)} with components/monitoring")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"deploy/: {len(docs)} Kubernetes manifests and every YAML file check out; {built}")
