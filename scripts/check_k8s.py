#!/usr/bin/env python3
"""Checks rendered Augur manifests (`kubectl kustomize k8s/overlays/<o>`) for what a schema cannot.

Usage: check_k8s.py --profile {base,dev,prod,generic} RENDERED.yaml   (or - for stdin)

Every check prints one line (`ok` or `FAIL`); the exit status is 1 when any check failed.
Run by scripts/validate-k8s.sh; needs PyYAML (installed with kubernetes-validate) and Python 3.11+
(tomllib, for the auth config of k8s/components/tls).

Besides the five Augur Deployments a rendering may hold other workloads (the OpenTelemetry
Collector of k8s/components/otel): they get the generic checks (probes, resources, security
context, pinned image, Service / PDB / NetworkPolicy), not the Augur-specific ones. When the
components are included, their promises are checked too: TLS (certificate Secret mounted read-only,
server and client paths, probes that work over TLS, the allow rules), the collector (endpoint
names a Service, reachable through the NetworkPolicies, a consistent pipeline) and Consul (agent
address, advertised pod IP, egress to the agent, ingress for its health checks).
"""

from __future__ import annotations

import argparse
import math
import posixpath
import re
import sys
import tomllib
from decimal import Decimal
from urllib.parse import urlparse

import yaml

# --------------------------------------------------------------------------------------------
# reporting


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failures: list[str] = []
        self.subject = ""

    def section(self, subject: str) -> None:
        """Starts the checks of one subject (an object, or a group of checks)."""
        self.subject = subject
        print(subject)

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        line = f"{what}: {detail}" if detail else what
        print(f"  {'ok  ' if ok else 'FAIL'} {line}")
        if ok:
            self.passed += 1
        else:
            self.failures.append(f"{self.subject}: {line}")
        return ok


# --------------------------------------------------------------------------------------------
# helpers

CPU_RE = re.compile(r"^([0-9.]+)(m?)$")
MEM_UNITS = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}
MEM_RE = re.compile(r"^([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T|)$")


def cpu(q) -> Decimal:
    m = CPU_RE.match(str(q))
    if not m:
        raise ValueError(f"bad CPU quantity {q!r}")
    v = Decimal(m.group(1))
    return v / 1000 if m.group(2) else v


def mem(q) -> int:
    m = MEM_RE.match(str(q))
    if not m:
        raise ValueError(f"bad memory quantity {q!r}")
    return int(Decimal(m.group(1)) * MEM_UNITS[m.group(2)])


def selects(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes LabelSelector against a label set. An empty selector selects everything."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# The five Augur services (one image, see the Dockerfile) and their gRPC service names.
AUGUR_SERVICES = {
    "feature-store": "augur.featurestore.v1.FeatureStore",
    "recommendation": "augur.recommendation.v1.Recommendation",
    "demand-forecast": "augur.forecast.v1.DemandForecast",
    "churn": "augur.churn.v1.Churn",
    "risk": "augur.risk.v1.Risk",
}
MODEL_SERVICES = [n for n in AUGUR_SERVICES if n != "feature-store"]


def is_augur(d: dict) -> bool:
    return d["kind"] == "Deployment" and d["metadata"]["name"] in AUGUR_SERVICES


def name_of(o: dict) -> str:
    return o["metadata"]["name"]


def ns_of(o: dict) -> str:
    return o["metadata"].get("namespace", "default")


# --------------------------------------------------------------------------------------------
# NetworkPolicy evaluation (enough of the semantics for our own policies)


def peer_matches(peer: dict, policy_ns: str, pod_ns: str, pod_labels: dict, ns_labels: dict) -> bool:
    if "ipBlock" in peer:
        return False  # pods are addressed by labels here, not by IP
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], ns_labels):
            return False
    elif pod_ns != policy_ns:
        return False
    if "podSelector" in peer:
        return selects(peer["podSelector"], pod_labels)
    return True


def port_matches(ports: list | None, port: int, protocol: str, named: dict) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        want = p["port"]
        if isinstance(want, str):
            want = named.get(want)
        end = p.get("endPort", want)
        if want is not None and want <= port <= end:
            return True
    return False


class Cluster:
    """The rendered objects plus a view of namespaces for policy evaluation."""

    def __init__(self, docs: list[dict]) -> None:
        self.docs = docs
        self.by_kind: dict[str, list[dict]] = {}
        for d in docs:
            self.by_kind.setdefault(d["kind"], []).append(d)
        self.ns_labels: dict[str, dict] = {}
        for n in self.by_kind.get("Namespace", []):
            labels = dict(n["metadata"].get("labels") or {})
            labels["kubernetes.io/metadata.name"] = name_of(n)
            self.ns_labels[name_of(n)] = labels

    def kind(self, k: str) -> list[dict]:
        return self.by_kind.get(k, [])

    def labels_of_ns(self, ns: str) -> dict:
        return self.ns_labels.get(ns, {"kubernetes.io/metadata.name": ns})

    def allowed(self, src: tuple[str, dict], dst: tuple[str, dict], port: int,
                protocol: str = "TCP", dst_named_ports: dict | None = None) -> bool:
        """Whether a connection from pod src=(ns, labels) to pod dst=(ns, labels):port is allowed
        by the rendered NetworkPolicies (pods outside the render are assumed unrestricted)."""
        named = dst_named_ports or {}
        src_ns, src_labels = src
        dst_ns, dst_labels = dst
        pols = self.kind("NetworkPolicy")

        def types(p):
            t = p["spec"].get("policyTypes")
            if t:
                return t
            return ["Ingress"] + (["Egress"] if "egress" in p["spec"] else [])

        egress_pols = [p for p in pols if ns_of(p) == src_ns and "Egress" in types(p)
                       and selects(p["spec"].get("podSelector"), src_labels)]
        if egress_pols:
            ok = False
            for p in egress_pols:
                for rule in p["spec"].get("egress") or []:
                    to = rule.get("to")
                    peer_ok = not to or any(
                        peer_matches(peer, ns_of(p), dst_ns, dst_labels, self.labels_of_ns(dst_ns))
                        for peer in to)
                    if peer_ok and port_matches(rule.get("ports"), port, protocol, named):
                        ok = True
            if not ok:
                return False

        ingress_pols = [p for p in pols if ns_of(p) == dst_ns and "Ingress" in types(p)
                        and selects(p["spec"].get("podSelector"), dst_labels)]
        if ingress_pols:
            ok = False
            for p in ingress_pols:
                for rule in p["spec"].get("ingress") or []:
                    frm = rule.get("from")
                    peer_ok = not frm or any(
                        peer_matches(peer, ns_of(p), src_ns, src_labels, self.labels_of_ns(src_ns))
                        for peer in frm)
                    if peer_ok and port_matches(rule.get("ports"), port, protocol, named):
                        ok = True
            if not ok:
                return False
        return True


# --------------------------------------------------------------------------------------------
# the checks

SECRET_NAME_RE = re.compile(r"(DATABASE_URL|HASH_KEY|PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY)",
                            re.IGNORECASE)


def container_env(cluster: Cluster, ns: str, c: dict) -> dict[str, object]:
    """Effective environment of a container: envFrom ConfigMaps, then env. Values are strings,
    or ('ref', valueFrom) for references."""
    env: dict[str, object] = {}
    cms = {name_of(cm): cm for cm in cluster.kind("ConfigMap") if ns_of(cm) == ns}
    for src in c.get("envFrom") or []:
        ref = src.get("configMapRef")
        if ref and ref["name"] in cms:
            prefix = src.get("prefix", "")
            for k, v in (cms[ref["name"]].get("data") or {}).items():
                env[prefix + k] = str(v)
    for e in c.get("env") or []:
        env[e["name"]] = ("ref", e["valueFrom"]) if "valueFrom" in e else str(e.get("value", ""))
    return env


def check_deployment(cluster: Cluster, d: dict, profile: str, r: Report) -> None:
    name, ns = name_of(d), ns_of(d)
    spec = d["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels") or {}
    psc = pod.get("securityContext") or {}
    augur = is_augur(d)
    r.section(f"deployment/{name} (namespace {ns})" + ("" if augur else " [not an Augur service: generic checks]"))

    r.check(selects(spec.get("selector"), pod_labels) and bool(spec.get("selector")),
            "selector matches the pod template labels")

    named_ports: dict[str, int] = {}
    numbered_ports: set[int] = set()
    for c in pod.get("containers", []):
        for p in c.get("ports") or []:
            numbered_ports.add(p["containerPort"])
            if "name" in p:
                named_ports[p["name"]] = p["containerPort"]

    for c in pod.get("containers", []):
        cn = c["name"]
        prefix = f"container {cn}: " if len(pod["containers"]) > 1 else ""

        # probes
        def describe(probe: dict | None) -> str | None:
            if not probe:
                return None
            if "grpc" in probe:
                svc = probe["grpc"].get("service")
                return f"grpc:{probe['grpc']['port']}" + (f" ({svc})" if svc else "")
            for k in ("httpGet", "tcpSocket", "exec"):
                if k in probe:
                    return k
            return "?"

        live, ready, start = (describe(c.get(k)) for k in ("livenessProbe", "readinessProbe", "startupProbe"))
        r.check(live is not None, f"{prefix}liveness probe", live or "missing")
        r.check(ready is not None, f"{prefix}readiness probe", ready or "missing")
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = c.get(kind) or {}
            if "grpc" in probe:
                port = probe["grpc"]["port"]
                r.check(port in numbered_ports, f"{prefix}{kind} gRPC port {port} is a container port")
            for k in ("tcpSocket", "httpGet"):
                if k in probe:
                    port = probe[k]["port"]
                    ok = port in named_ports if isinstance(port, str) else port in numbered_ports
                    r.check(ok, f"{prefix}{kind} {k} port {port} is a container port"
                            + (" (by name)" if isinstance(port, str) else ""))

        # resources
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        have = all(k in req for k in ("cpu", "memory")) and all(k in lim for k in ("cpu", "memory"))
        detail = (f"requests cpu={req.get('cpu')} memory={req.get('memory')}, "
                  f"limits cpu={lim.get('cpu')} memory={lim.get('memory')}")
        if r.check(have, f"{prefix}resource requests and limits (cpu, memory)", detail):
            r.check(cpu(req["cpu"]) <= cpu(lim["cpu"]) and mem(req["memory"]) <= mem(lim["memory"]),
                    f"{prefix}requests <= limits")

        # security context
        csc = c.get("securityContext") or {}
        non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        r.check(non_root and uid != 0, f"{prefix}runAsNonRoot", f"runAsUser={uid}")
        r.check(csc.get("readOnlyRootFilesystem") is True, f"{prefix}readOnlyRootFilesystem")
        r.check(csc.get("allowPrivilegeEscalation") is False, f"{prefix}allowPrivilegeEscalation: false")
        drops = (csc.get("capabilities") or {}).get("drop") or []
        adds = (csc.get("capabilities") or {}).get("add") or []
        r.check("ALL" in drops and not adds, f"{prefix}capabilities drop ALL, add none")
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        r.check(seccomp in ("RuntimeDefault", "Localhost"), f"{prefix}seccompProfile", str(seccomp))
        r.check(not csc.get("privileged", False), f"{prefix}not privileged")

        # image
        image = c.get("image", "")
        if profile == "base" and augur:
            r.check(image == "augur", f"{prefix}image is the placeholder `augur` that overlays rewrite", image)
        else:
            last = image.rsplit("/", 1)[-1]
            pinned = "@sha256:" in image or (":" in last and not last.endswith(":latest"))
            r.check(pinned, f"{prefix}image pinned (tag or digest, not :latest)", image)
            if profile == "prod":
                r.check("/" in image.split("@")[0], f"{prefix}image from a registry repository (prod)", image)

        # environment
        env = container_env(cluster, ns, c)
        tokio = env.get("TOKIO_WORKER_THREADS")
        if not augur:
            pass
        elif isinstance(tokio, tuple):
            ref = tokio[1].get("resourceFieldRef") or {}
            ok = (ref.get("resource") == "limits.cpu" and ref.get("containerName", cn) == cn
                  and cpu(ref.get("divisor", "1")) == 1)
            r.check(ok, f"{prefix}TOKIO_WORKER_THREADS follows the CPU limit",
                    f"resourceFieldRef limits.cpu (= {math.ceil(cpu(lim['cpu'])) if 'cpu' in lim else '?'})")
        elif tokio is not None and "cpu" in lim:
            want = math.ceil(cpu(lim["cpu"]))
            r.check(str(tokio) == str(want), f"{prefix}TOKIO_WORKER_THREADS matches the CPU limit",
                    f"{tokio} vs limits.cpu {lim['cpu']}")
        else:
            r.check(False, f"{prefix}TOKIO_WORKER_THREADS set", "missing (or no CPU limit)")

        drain = int(env.get("AUGUR_SERVER__DRAIN_DELAY_MS", "0")) if not isinstance(
            env.get("AUGUR_SERVER__DRAIN_DELAY_MS"), tuple) else 0
        grace = int(env.get("AUGUR_SERVER__SHUTDOWN_GRACE_MS", "10000")) if not isinstance(
            env.get("AUGUR_SERVER__SHUTDOWN_GRACE_MS"), tuple) else 10000
        tgp = pod.get("terminationGracePeriodSeconds", 30)
        if augur:
            r.check(tgp * 1000 > drain + grace, f"{prefix}terminationGracePeriodSeconds > drain + grace",
                    f"{tgp} s > {drain} ms + {grace} ms")

        for k, v in env.items():
            if SECRET_NAME_RE.search(k) and not isinstance(v, tuple) and v != "":
                r.check(False, f"{prefix}{k} comes from a Secret", "literal value in the manifests")
            elif SECRET_NAME_RE.search(k) and isinstance(v, tuple):
                ref = v[1].get("secretKeyRef")
                r.check(ref is not None, f"{prefix}{k} comes from a Secret",
                        f"secret {ref['name']} key {ref['key']}"
                        f"{' (optional)' if ref.get('optional') else ''}" if ref else "not a secretKeyRef")

        listen = env.get("AUGUR_SERVER__LISTEN")
        if isinstance(listen, str) and listen:
            lport = int(listen.rsplit(":", 1)[-1])
            host = listen.rsplit(":", 1)[0]
            r.check(lport in numbered_ports and host in ("0.0.0.0", "[::]"),
                    f"{prefix}AUGUR_SERVER__LISTEN binds every interface on the container port", listen)

        fs_url = env.get("AUGUR_FEATURE_STORE_URL")
        if isinstance(fs_url, str) and fs_url:
            u = urlparse(fs_url)
            parts = (u.hostname or "").split(".")
            svc_name, svc_ns = parts[0], (parts[1] if len(parts) > 1 else ns)
            svc = [s for s in cluster.kind("Service") if name_of(s) == svc_name and ns_of(s) == svc_ns
                   and any(p["port"] == u.port for p in s["spec"].get("ports", []))]
            r.check(bool(svc), f"{prefix}AUGUR_FEATURE_STORE_URL names a rendered Service and port", fs_url)

        # config maps and volumes referenced exist
        for src in c.get("envFrom") or []:
            ref = src.get("configMapRef")
            if ref:
                exists = any(name_of(cm) == ref["name"] and ns_of(cm) == ns for cm in cluster.kind("ConfigMap"))
                r.check(exists or ref.get("optional", False), f"{prefix}ConfigMap {ref['name']} exists")

        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
        if augur:
            r.check("/data" in mounts and "/tmp" in mounts, f"{prefix}writable /data and /tmp mounted",
                    ", ".join(f"{p}<-{n}" for p, n in sorted(mounts.items())))
        for v in pod.get("volumes") or []:
            src = v.get("configMap")
            if src and v["name"] in mounts.values():
                exists = any(name_of(cm) == src["name"] and ns_of(cm) == ns for cm in cluster.kind("ConfigMap"))
                r.check(exists or src.get("optional", False), f"{prefix}ConfigMap volume {src['name']} exists")

    # volumes
    hpas = [h for h in cluster.kind("HorizontalPodAutoscaler") if ns_of(h) == ns
            and h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
            and h["spec"]["scaleTargetRef"]["name"] == name]
    max_replicas = max([h["spec"]["maxReplicas"] for h in hpas] + [spec.get("replicas", 1)])
    for v in pod.get("volumes") or []:
        claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
        if not claim:
            continue
        pvcs = [p for p in cluster.kind("PersistentVolumeClaim") if name_of(p) == claim and ns_of(p) == ns]
        if not r.check(bool(pvcs), f"PersistentVolumeClaim {claim} exists"):
            continue
        modes = pvcs[0]["spec"].get("accessModes") or []
        if "ReadWriteMany" not in modes and "ReadOnlyMany" not in modes:
            strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
            r.check(max_replicas == 1 and strategy == "Recreate",
                    f"{'/'.join(modes)} volume {claim}: at most one replica and strategy Recreate",
                    f"max replicas {max_replicas}, strategy {strategy}")

    # Service
    svcs = [s for s in cluster.kind("Service") if ns_of(s) == ns and s["spec"].get("selector")
            and selects({"matchLabels": s["spec"]["selector"]}, pod_labels)]
    r.check(bool(svcs), "a Service selects the pods", ", ".join(name_of(s) for s in svcs) or "none")
    for s in svcs:
        headless = s["spec"].get("clusterIP") == "None"
        if augur:
            r.check(headless, f"service/{name_of(s)} is headless (clusterIP: None)")
        for p in s["spec"].get("ports", []):
            tp = p.get("targetPort", p["port"])
            target = named_ports.get(tp) if isinstance(tp, str) else tp
            r.check(target in numbered_ports, f"service/{name_of(s)} port {p.get('name')} -> container port",
                    f"{p['port']} -> {tp}")
            if headless:
                r.check(target == p["port"], f"service/{name_of(s)} port equals the container port (no proxy)")
            if augur:
                r.check(p.get("name") == "grpc" and p.get("appProtocol") == "grpc",
                        f"service/{name_of(s)} port named grpc, appProtocol grpc")

    # PodDisruptionBudget
    pdbs = [p for p in cluster.kind("PodDisruptionBudget") if ns_of(p) == ns
            and selects(p["spec"].get("selector"), pod_labels)]
    if r.check(bool(pdbs), "a PodDisruptionBudget covers the pods", ", ".join(name_of(p) for p in pdbs) or "none"):
        for p in pdbs:
            ps = p["spec"]
            budget = (f"maxUnavailable {ps['maxUnavailable']}" if "maxUnavailable" in ps
                      else f"minAvailable {ps.get('minAvailable')}")
            # minAvailable >= replicas would block every drain.
            blocking = "minAvailable" in ps and isinstance(ps["minAvailable"], int) and \
                ps["minAvailable"] >= max(1, min([h["spec"].get("minReplicas", 1) for h in hpas] or [spec.get("replicas", 1)]))
            r.check(not blocking, f"pdb/{name_of(p)} allows a voluntary disruption", budget)

    # HorizontalPodAutoscaler
    if hpas:
        for h in hpas:
            hs = h["spec"]
            r.check(1 <= hs.get("minReplicas", 1) <= hs["maxReplicas"],
                    f"hpa/{name_of(h)} targets the Deployment, 1 <= min <= max", f"{hs.get('minReplicas', 1)}-{hs['maxReplicas']} replicas")
            r.check("replicas" not in spec, "spec.replicas unset (the HPA owns the count)",
                    f"replicas: {spec.get('replicas')}" if "replicas" in spec else "")
            cpu_metric = any(m.get("type") == "Resource" and m["resource"]["name"] == "cpu"
                             for m in hs.get("metrics") or [])
            r.check(cpu_metric, f"hpa/{name_of(h)} scales on CPU")
    if profile == "prod" and not augur and not hpas:
        r.check(spec.get("replicas", 1) >= 2, "at least 2 replicas (prod)", str(spec.get("replicas", 1)))
    elif profile == "prod":
        if r.check(bool(hpas), "an HPA targets the Deployment (prod)"):
            lo = min(h["spec"].get("minReplicas", 1) for h in hpas)
            want = 3 if name == "feature-store" else 2
            r.check(lo >= want, f"HPA minReplicas >= {want} (prod)", str(lo))
    if profile == "dev":
        single = all(h["spec"].get("minReplicas", 1) == h["spec"]["maxReplicas"] == 1 for h in hpas)
        r.check(single and spec.get("replicas", 1) == 1, "one replica, no autoscaling (dev)",
                f"replicas {spec.get('replicas', 1)}, {len(hpas)} HPA")

    # NetworkPolicy
    pols = [p for p in cluster.kind("NetworkPolicy") if ns_of(p) == ns
            and selects(p["spec"].get("podSelector"), pod_labels)]
    r.check(bool(pols), "a NetworkPolicy selects the pods", ", ".join(name_of(p) for p in pols) or "none")

    # feature store database by profile
    if name == "feature-store":
        env = container_env(cluster, ns, pod["containers"][0])
        db = env.get("AUGUR_DATABASE_URL")
        key = env.get("AUGUR_HASH_KEY")
        if profile == "dev":
            data = next((v for v in pod.get("volumes") or [] if v["name"] == "data"), {})
            r.check(db is None, "SQLite: AUGUR_DATABASE_URL unset (dev)")
            r.check("persistentVolumeClaim" in data, "SQLite data on a PersistentVolumeClaim (dev)")
        if profile in ("prod", "base"):
            for var, v in (("AUGUR_DATABASE_URL", db), ("AUGUR_HASH_KEY", key)):
                ref = v[1].get("secretKeyRef") if isinstance(v, tuple) else None
                r.check(bool(ref) and not ref.get("optional", False),
                        f"{var} from a required Secret key ({profile})",
                        f"{ref['name']}/{ref['key']}" if ref else "missing")


def check_network(cluster: Cluster, r: Report) -> None:
    deps = {name_of(d): d for d in cluster.kind("Deployment")}
    if "feature-store" not in deps or not cluster.kind("NetworkPolicy"):
        return
    r.section("network policies (evaluated on the rendered policies)")

    def pod(d):
        return ns_of(d), d["spec"]["template"]["metadata"].get("labels") or {}

    def port(d):
        return d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]

    fs = deps["feature-store"]
    models = [d for n, d in sorted(deps.items()) if n in MODEL_SERVICES]
    client = ("shop", {"app": "checkout", "augur.io/client": "true"})
    stranger_same_ns = (ns_of(fs), {"app": "debug"})
    stranger = ("shop", {"app": "checkout"})
    dns = ("kube-system", {"k8s-app": "kube-dns"})
    internet = ("elsewhere", {"app": "anything"})
    for m in models:
        n = name_of(m)
        r.check(cluster.allowed(pod(m), pod(fs), 50051), f"{n} -> feature-store:50051 allowed")
        r.check(cluster.allowed(pod(m), dns, 53, "UDP") and cluster.allowed(pod(m), dns, 53, "TCP"),
                f"{n} -> kube-dns:53 allowed")
        r.check(not cluster.allowed(pod(m), internet, 443), f"{n} -> anything else denied")
        other = models[1] if m is models[0] else models[0]
        r.check(not cluster.allowed(pod(m), pod(other), port(other)),
                f"{n} -> {name_of(other)}:{port(other)} denied (model services talk to the feature store only)")
    for d in [fs] + models:
        n = name_of(d)
        r.check(cluster.allowed(client, pod(d), port(d)),
                f"client labelled augur.io/client=true -> {n}:{port(d)} allowed")
        r.check(not cluster.allowed(stranger, pod(d), port(d)), f"unlabelled pod elsewhere -> {n} denied")
        r.check(not cluster.allowed(stranger_same_ns, pod(d), port(d)),
                f"unlabelled pod in {ns_of(d)} -> {n} denied")


# --------------------------------------------------------------------------------------------
# components: TLS and auth, OpenTelemetry Collector, Consul


def file_source(pod: dict, c: dict, path: str):
    """Where a file path inside container c comes from: (volumeMount, volume, key in the volume's
    Secret / ConfigMap) or None when no volume mount covers it."""
    best = None
    for m in c.get("volumeMounts") or []:
        mp = m["mountPath"].rstrip("/")
        if m.get("subPath"):
            if path == mp:
                best = (m, m["subPath"])
        elif path.startswith(mp + "/") and (best is None or len(mp) > len(best[0]["mountPath"].rstrip("/"))):
            best = (m, path[len(mp) + 1:])
    if best is None:
        return None
    m, rel = best
    vol = next((v for v in pod.get("volumes") or [] if v["name"] == m["name"]), None)
    if vol is None:
        return None
    src = vol.get("secret") or vol.get("configMap") or {}
    items = src.get("items")
    if items:
        key = next((i["key"] for i in items if i["path"] == rel), None)
    else:
        key = rel
    return m, vol, key


def volume_modes(vol: dict) -> list[int]:
    src = vol.get("secret") or vol.get("configMap") or {}
    modes = [src.get("defaultMode", 0o644)]
    modes += [i["mode"] for i in src.get("items") or [] if "mode" in i]
    return modes


def allowed_by_rules(allow: dict, principal: str, method: str) -> bool:
    """The runtime's rule (shared/runtime/src/security.rs, Authorizer::authorize): the exact
    method, else `pkg.Service/*`, else `*`; allowed when the rule lists the principal or `*`."""
    service = method.split("/", 1)[0]
    rule = allow.get(method)
    if rule is None:
        rule = allow.get(f"{service}/*")
    if rule is None:
        rule = allow.get("*")
    return rule is not None and any(p in ("*", principal) for p in rule)


FS = AUGUR_SERVICES["feature-store"]
# Only the model services may read history and scan in bulk; only an administrator may erase a
# customer or train a model (see k8s/components/tls/auth.toml).
MODEL_ONLY_METHODS = [f"{FS}/GetHistoricalFeatures", f"{FS}/ScanInteractions", f"{FS}/ScanEvents"]
ADMIN_ONLY_METHODS = [f"{FS}/DeleteCustomer"] + [f"{AUGUR_SERVICES[m]}/Train" for m in MODEL_SERVICES]


def check_auth_file(cluster: Cluster, d: dict, c: dict, path: str, r: Report, seen: set) -> None:
    pod, ns, name = d["spec"]["template"]["spec"], ns_of(d), name_of(d)
    src = file_source(pod, c, path)
    if not r.check(src is not None and "configMap" in src[1], f"{name}: AUGUR_CONFIG is a file from a ConfigMap volume",
                   path):
        return
    m, vol, key = src
    r.check(m.get("readOnly") is True, f"{name}: config volume mounted read-only", m["mountPath"])
    cm = next((x for x in cluster.kind("ConfigMap") if name_of(x) == vol["configMap"]["name"] and ns_of(x) == ns), None)
    if not r.check(cm is not None and key in (cm.get("data") or {}),
                   f"{name}: configmap/{vol['configMap']['name']} has {key}"):
        return
    if (name_of(cm), key) in seen:
        return  # the same file, checked for an earlier Deployment
    seen.add((name_of(cm), key))
    print(f"  -- configmap/{name_of(cm)} {key}:")
    try:
        conf = tomllib.loads(cm["data"][key])
    except tomllib.TOMLDecodeError as e:
        r.check(False, f"{key} is valid TOML", str(e))
        return
    auth = (conf.get("server") or {}).get("auth") or {}
    r.check(auth.get("enabled") is True, "[server.auth] enabled")
    r.check("tokens" not in auth, "no tokens in the config file (they come from Secrets)")
    allow = auth.get("allow") or {}
    bad = [k for k, v in allow.items() if not (k == "*" or "/" in k)
           or not isinstance(v, list) or not all(isinstance(p, str) for p in v)]
    r.check(bool(allow) and not bad, "allow rules well-formed (\"*\", pkg.Service/*, pkg.Service/Method -> [principals])",
            ", ".join(bad) or f"{len(allow)} rules")
    known = set(AUGUR_SERVICES.values())
    stray = [k for k in allow if k != "*" and k.split("/", 1)[0] not in known]
    r.check(not stray, "allow rules name Augur services", ", ".join(stray) or "")
    outsider = "gateway"
    for method in MODEL_ONLY_METHODS:
        ok = all(allowed_by_rules(allow, p, method) for p in MODEL_SERVICES) and not any(
            allowed_by_rules(allow, p, method) for p in ("admin", outsider, "feature-store"))
        r.check(ok, f"only the model services may call {method}")
    for method in ADMIN_ONLY_METHODS:
        ok = allowed_by_rules(allow, "admin", method) and not any(
            allowed_by_rules(allow, p, method) for p in [outsider] + list(AUGUR_SERVICES))
        r.check(ok, f"only admin may call {method}")
    r.check(all(allowed_by_rules(allow, p, f"{FS}/GetOnlineFeatures") for p in MODEL_SERVICES),
            "model services may call GetOnlineFeatures (their request path)")


def check_tls(cluster: Cluster, r: Report) -> None:
    deps = [d for d in cluster.kind("Deployment") if is_augur(d)]
    envs = {name_of(d): container_env(cluster, ns_of(d), d["spec"]["template"]["spec"]["containers"][0])
            for d in deps}
    if not any(e.get("AUGUR_SERVER__TLS__CERT_PATH") for e in envs.values()):
        return
    r.section("TLS, mutual TLS and per-RPC auth (a rendering with [server.tls])")
    secrets_seen: dict[str, str] = {}
    auth_files_seen: set = set()
    for d in deps:
        name, pod = name_of(d), d["spec"]["template"]["spec"]
        c, env = pod["containers"][0], envs[name]
        paths = {k: env.get(k) for k in ("AUGUR_SERVER__TLS__CERT_PATH", "AUGUR_SERVER__TLS__KEY_PATH",
                                         "AUGUR_SERVER__TLS__CLIENT_CA_PATH")}
        if name in MODEL_SERVICES:
            paths.update({k: env.get(k) for k in ("AUGUR_CLIENT__CA_PATH", "AUGUR_CLIENT__CERT_PATH",
                                                  "AUGUR_CLIENT__KEY_PATH")})
        missing = [k for k, v in paths.items() if not isinstance(v, str) or not v]
        what = "server and client" if name in MODEL_SERVICES else "server"
        if not r.check(not missing, f"{name}: {what} certificate, key and CA paths set", ", ".join(missing)):
            continue
        sources = {k: file_source(pod, c, v) for k, v in paths.items()}
        unmounted = [f"{k}={paths[k]}" for k, src in sources.items() if src is None or "secret" not in src[1]]
        if not r.check(not unmounted, f"{name}: every path is in a Secret volume", ", ".join(unmounted)):
            continue
        vols = {src[1]["name"] for src in sources.values()}
        secret = next(iter(sources.values()))[1]["secret"]["secretName"]
        r.check(len(vols) == 1, f"{name}: server and client identity from one certificate Secret",
                f"secret {secret}" if len(vols) == 1 else ", ".join(sorted(vols)))
        for src in sources.values():
            m, vol, _ = src
            r.check(m.get("readOnly") is True and not m.get("subPath"),
                    f"{name}: {vol['secret']['secretName']} mounted read-only at {m['mountPath']} (no subPath)")
            break
        keys = {k: src[2] for k, src in sources.items()}
        want = {"CERT_PATH": "tls.crt", "KEY_PATH": "tls.key", "CA_PATH": "ca.crt"}
        wrong = [f"{k}->{keys[k]}" for k in keys
                 if keys[k] != next(v for suffix, v in want.items() if k.endswith(suffix))]
        r.check(not wrong, f"{name}: paths map to the kubernetes.io/tls keys tls.crt, tls.key, ca.crt",
                ", ".join(wrong))
        modes = volume_modes(next(iter(sources.values()))[1])
        r.check(all(mode & 0o007 == 0 for mode in modes), f"{name}: key files not world-readable",
                ", ".join(oct(mo) for mo in modes))
        r.check(secret not in secrets_seen, f"{name}: its own certificate Secret",
                f"{secret}" + (f" also used by {secrets_seen.get(secret)}" if secret in secrets_seen else ""))
        secrets_seen.setdefault(secret, name)
        r.check(not secret.strip() or name in secret, f"{name}: the Secret is named for the service", secret)
        if name in MODEL_SERVICES:
            domain = env.get("AUGUR_CLIENT__DOMAIN_NAME")
            fs_url = env.get("AUGUR_FEATURE_STORE_URL")
            host = urlparse(fs_url).hostname if isinstance(fs_url, str) else None
            r.check(isinstance(domain, str) and domain.split(".")[0] == "feature-store",
                    f"{name}: client.domain_name names the feature store's certificate", str(domain))
            r.check(isinstance(fs_url, str) and fs_url.startswith(("dns://", "https://", "consul://")),
                    f"{name}: feature store target usable with TLS (dns://, consul:// or https://)",
                    f"{fs_url} (host {host})")
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(kind) or {}
            r.check(bool(probe) and "grpc" not in probe,
                    f"{name}: {kind} is not a native gRPC probe (the kubelet cannot speak TLS)",
                    ", ".join(k for k in probe if k in ("grpc", "tcpSocket", "httpGet", "exec")) or "missing")
        config = env.get("AUGUR_CONFIG")
        if r.check(isinstance(config, str) and bool(config), f"{name}: AUGUR_CONFIG names the auth config", str(config)):
            check_auth_file(cluster, d, c, config, r, auth_files_seen)
        for k, v in env.items():
            if k.startswith("AUGUR_SERVER__AUTH__TOKENS__") or k == "AUGUR_CLIENT__TOKEN":
                ref = v[1].get("secretKeyRef") if isinstance(v, tuple) else None
                r.check(ref is not None, f"{name}: {k} from a Secret",
                        f"{ref['name']}/{ref['key']}" if ref else "inline value")


def endpoint_target(cluster: Cluster, url: str, ns: str):
    """The Service, its port and the Deployments behind an http(s)://<svc>[.<ns>...]:<port> URL."""
    u = urlparse(url)
    parts = (u.hostname or "").split(".")
    svc_name, svc_ns = parts[0], (parts[1] if len(parts) > 1 else ns)
    svc = next((s for s in cluster.kind("Service") if name_of(s) == svc_name and ns_of(s) == svc_ns), None)
    if svc is None:
        return None, None, []
    port = next((p for p in svc["spec"].get("ports", []) if p["port"] == u.port), None)
    backends = [d for d in cluster.kind("Deployment") if ns_of(d) == svc_ns and svc["spec"].get("selector")
                and selects({"matchLabels": svc["spec"]["selector"]}, d["spec"]["template"]["metadata"].get("labels") or {})]
    return svc, port, backends


def pod_of(d: dict) -> tuple[str, dict]:
    return ns_of(d), d["spec"]["template"]["metadata"].get("labels") or {}


def named_ports_of(d: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in d["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports") or [] if "name" in p}


def check_collector_config(cluster: Cluster, col: dict, otlp_port: int, r: Report) -> None:
    pod = col["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = (c.get("command") or []) + (c.get("args") or [])
    cfg = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
    src = file_source(pod, c, cfg) if cfg else None
    if not r.check(src is not None and "configMap" in src[1], f"{name_of(col)}: --config is a file from a ConfigMap",
                   str(cfg)):
        return
    cm = next((x for x in cluster.kind("ConfigMap") if name_of(x) == src[1]["configMap"]["name"]
               and ns_of(x) == ns_of(col)), None)
    if not r.check(cm is not None and src[2] in (cm.get("data") or {}), f"{name_of(col)}: its config exists"):
        return
    conf = yaml.safe_load(cm["data"][src[2]]) or {}
    service = conf.get("service") or {}
    pipelines = service.get("pipelines") or {}
    undefined = []
    for pname, pl in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            for comp in pl.get(section) or []:
                if comp not in (conf.get(section) or {}):
                    undefined.append(f"{pname}.{section}.{comp}")
    r.check(bool(pipelines) and not undefined, f"{name_of(col)}: pipelines use only defined components",
            ", ".join(undefined) or ", ".join(sorted(pipelines)))
    r.check({"traces", "metrics"} <= set(pipelines), f"{name_of(col)}: traces and metrics pipelines")
    r.check(all("otlp" in (pl.get("receivers") or []) for pl in pipelines.values()),
            f"{name_of(col)}: every pipeline receives OTLP")
    grpc = (((conf.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}).get("grpc") or {}
    ep = str(grpc.get("endpoint", ""))
    r.check(ep.rsplit(":", 1)[-1] == str(otlp_port), f"{name_of(col)}: OTLP/gRPC receiver on the Service's target port",
            f"{ep} vs {otlp_port}")
    hc = (conf.get("extensions") or {}).get("health_check")
    probe_ports = set()
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        hg = (c.get(kind) or {}).get("httpGet")
        if hg:
            port = hg["port"]
            probe_ports.add(named_ports_of(col).get(port) if isinstance(port, str) else port)
    if probe_ports:
        hc_port = str((hc or {}).get("endpoint", "")).rsplit(":", 1)[-1]
        r.check(hc is not None and "health_check" in (service.get("extensions") or [])
                and probe_ports == {int(hc_port) if hc_port.isdigit() else -1},
                f"{name_of(col)}: HTTP probes hit the enabled health_check extension",
                f"probe ports {sorted(probe_ports)}, health_check {(hc or {}).get('endpoint')}")


def check_otel(cluster: Cluster, r: Report) -> None:
    deps = [d for d in cluster.kind("Deployment") if is_augur(d)]
    endpoints = {}
    for d in deps:
        env = container_env(cluster, ns_of(d), d["spec"]["template"]["spec"]["containers"][0])
        ep = env.get("AUGUR_TELEMETRY__OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        endpoints[name_of(d)] = ep
    if not any(endpoints.values()):
        return
    r.section("OpenTelemetry: every service exports to a reachable collector")
    checked_collectors = set()
    stranger = ("shop", {"app": "checkout"})
    for d in deps:
        name, ep = name_of(d), endpoints[name_of(d)]
        if not r.check(isinstance(ep, str) and ep.startswith(("http://", "https://")),
                       f"{name}: OTLP endpoint set (http:// or https://)", str(ep)):
            continue
        svc, port, backends = endpoint_target(cluster, ep, ns_of(d))
        if not r.check(svc is not None and port is not None and bool(backends),
                       f"{name}: OTLP endpoint names a rendered Service, port and Deployment", ep):
            continue
        for col in backends:
            tp = port.get("targetPort", port["port"])
            target = named_ports_of(col).get(tp) if isinstance(tp, str) else tp
            r.check(cluster.allowed(pod_of(d), pod_of(col), target, "TCP", named_ports_of(col)),
                    f"{name} -> {name_of(col)}:{target} allowed by the NetworkPolicies")
            if name_of(col) not in checked_collectors:
                checked_collectors.add(name_of(col))
                r.check(not cluster.allowed(stranger, pod_of(col), target),
                        f"unlabelled pod elsewhere -> {name_of(col)}:{target} denied")
                r.check(not cluster.allowed(pod_of(col), pod_of(deps[0]), 50051),
                        f"{name_of(col)} -> {name_of(deps[0])} denied (the collector calls no Augur service)")
                check_collector_config(cluster, col, target, r)


def check_prometheus(cluster: Cluster, r: Report) -> None:
    deps = [d for d in cluster.kind("Deployment") if is_augur(d)]
    listens = {}
    for d in deps:
        env = container_env(cluster, ns_of(d), d["spec"]["template"]["spec"]["containers"][0])
        listens[name_of(d)] = env.get("AUGUR_TELEMETRY__PROMETHEUS_LISTEN")
    if not any(listens.values()):
        return
    r.section("Prometheus: every service serves /metrics where the monitoring namespace can scrape it")
    monitoring = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
    stranger = ("shop", {"app": "checkout"})
    for d in deps:
        name, listen = name_of(d), listens[name_of(d)]
        m = re.fullmatch(r"(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):(\d{1,5})", str(listen or ""))
        if not r.check(m is not None, f"{name}: prometheus listen address is ip:port", str(listen)):
            continue
        port = int(m.group(2))
        r.check(m.group(1) not in ("127.0.0.1", "[::1]"), f"{name}: metrics listen beyond loopback", listen)
        r.check(named_ports_of(d).get("metrics") == port,
                f"{name}: metrics port {port} is the container port named metrics", str(named_ports_of(d)))
        ann = d["spec"]["template"]["metadata"].get("annotations") or {}
        r.check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(port),
                f"{name}: prometheus.io annotations name port {port}", str(ann))
        r.check(cluster.allowed(monitoring, pod_of(d), port, "TCP", named_ports_of(d)),
                f"monitoring/prometheus -> {name}:{port} allowed by the NetworkPolicies")
        r.check(not cluster.allowed(stranger, pod_of(d), port, "TCP", named_ports_of(d)),
                f"unlabelled pod elsewhere -> {name}:{port} denied")


def check_consul(cluster: Cluster, r: Report) -> None:
    deps = [d for d in cluster.kind("Deployment") if is_augur(d)]
    with_consul = []
    for d in deps:
        c = d["spec"]["template"]["spec"]["containers"][0]
        env = container_env(cluster, ns_of(d), c)
        if env.get("AUGUR_SERVER__CONSUL__ADDRESS"):
            with_consul.append((d, c, env))
    if not with_consul:
        return
    r.section("Consul registration")
    r.check(len(with_consul) == len(deps), "every Augur service registers",
            f"{len(with_consul)} of {len(deps)}")
    agent = ("consul", {"app": "consul", "component": "client"})
    node = ("node-network", {})  # the agent's hostPort on a node IP
    for d, c, env in with_consul:
        name = name_of(d)
        addr = env["AUGUR_SERVER__CONSUL__ADDRESS"]
        if isinstance(addr, tuple):
            r.check(False, f"{name}: consul address is a plain value", "valueFrom")
            continue
        r.check(addr.startswith(("http://", "https://")), f"{name}: consul address is http(s)://", addr)
        # $(VAR) references must be defined earlier in env (the kubelet expands only those).
        env_list = c.get("env") or []
        defined_before = {e["name"] for e in env_list[:next(
            (i for i, e in enumerate(env_list) if e["name"] == "AUGUR_SERVER__CONSUL__ADDRESS"), len(env_list))]}
        refs = re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", addr)
        r.check(all(v in defined_before for v in refs), f"{name}: $(...) in the address defined before it",
                ", ".join(refs) or "none")
        host_var = next((e for e in env_list if e["name"] in refs), None)
        if host_var is not None:
            path = ((host_var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            r.check(path == "status.hostIP", f"{name}: {host_var['name']} is the node IP (status.hostIP)", str(path))
        port = urlparse(addr.replace("$(", "").replace(")", "")).port or 8500
        pod_ip = env.get("POD_IP")
        adv = env.get("AUGUR_SERVER__CONSUL__ADVERTISE_ADDRESS")
        ok = (isinstance(pod_ip, tuple) and ((pod_ip[1].get("fieldRef") or {}).get("fieldPath") == "status.podIP")) \
            or (isinstance(adv, str) and adv)
        r.check(bool(ok), f"{name}: advertises the pod IP (POD_IP from status.podIP)")
        token = env.get("AUGUR_SERVER__CONSUL__TOKEN")
        if token is not None:
            ref = token[1].get("secretKeyRef") if isinstance(token, tuple) else None
            r.check(ref is not None, f"{name}: consul token from a Secret",
                    f"{ref['name']}/{ref['key']}" if ref else "inline value")
        r.check(cluster.allowed(pod_of(d), node, port), f"{name} -> consul agent :{port} allowed")
        gport = c["ports"][0]["containerPort"]
        r.check(cluster.allowed(agent, pod_of(d), gport, "TCP", named_ports_of(d)),
                f"consul agent (namespace consul) -> {name}:{gport} allowed (its gRPC health check)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="generic", choices=["base", "dev", "prod", "generic"])
    ap.add_argument("file")
    args = ap.parse_args()

    text = sys.stdin.read() if args.file == "-" else open(args.file).read()
    docs = [d for d in yaml.safe_load_all(text) if d]
    cluster = Cluster(docs)
    r = Report()

    kinds: dict[str, int] = {}
    for d in docs:
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    print(f"{len(docs)} objects: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))

    r.section("repository hygiene")
    r.check("Secret" not in kinds, "no Secret objects (secrets are referenced, never committed)")
    for cm in cluster.kind("ConfigMap"):
        for k, v in (cm.get("data") or {}).items():
            if SECRET_NAME_RE.search(k) and v:
                r.check(False, f"configmap/{name_of(cm)} holds no secret", k)
    namespaces = {ns_of(d) for d in docs if d["kind"] != "Namespace"}
    r.check(namespaces <= set(cluster.ns_labels), "every namespace used is rendered", ", ".join(sorted(namespaces)))
    for n in cluster.kind("Namespace"):
        level = (n["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce")
        r.check(level == "restricted", f"namespace/{name_of(n)} enforces Pod Security 'restricted'", str(level))
    deployments = {name_of(d) for d in cluster.kind("Deployment")}
    for h in cluster.kind("HorizontalPodAutoscaler"):
        r.check(h["spec"]["scaleTargetRef"]["name"] in deployments,
                f"hpa/{name_of(h)} targets a rendered Deployment", h["spec"]["scaleTargetRef"]["name"])
    r.check(bool(deployments), "at least one Deployment", ", ".join(sorted(deployments)))
    images = {c["image"] for d in cluster.kind("Deployment") if is_augur(d)
              for c in d["spec"]["template"]["spec"]["containers"]}
    r.check(len(images) == 1, "one image for every Augur service (see the Dockerfile)", ", ".join(sorted(images)))
    for cm in cluster.kind("ConfigMap"):
        for k, v in (cm.get("data") or {}).items():
            v = str(v)
            if "PRIVATE KEY-----" in v:
                r.check(False, f"configmap/{name_of(cm)} holds no private key", k)
            if re.search(r"^\s*[\w.\"-]*token[\w\"]*\s*=\s*\S", v, re.IGNORECASE | re.MULTILINE):
                r.check(False, f"configmap/{name_of(cm)} holds no token value", k)

    for d in cluster.kind("Deployment"):
        check_deployment(cluster, d, args.profile, r)
    check_network(cluster, r)
    check_tls(cluster, r)
    check_otel(cluster, r)
    check_prometheus(cluster, r)
    check_consul(cluster, r)

    for f in r.failures:
        print(f"FAIL {f}")
    print(f"{r.passed + len(r.failures)} checks, {len(r.failures)} failed")
    return 1 if r.failures else 0


if __name__ == "__main__":
    sys.exit(main())
