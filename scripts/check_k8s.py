#!/usr/bin/env python3
"""Checks rendered Augur manifests (`kubectl kustomize k8s/overlays/<o>`) for what a schema cannot.

Usage: check_k8s.py --profile {base,dev,prod,generic} RENDERED.yaml   (or - for stdin)

Every check prints one line (`ok` or `FAIL`); the exit status is 1 when any check failed.
Run by scripts/validate-k8s.sh; needs PyYAML (installed with kubernetes-validate).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
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
    r.section(f"deployment/{name} (namespace {ns})")

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
        if profile == "base":
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
        if isinstance(tokio, tuple):
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
        r.check("/data" in mounts and "/tmp" in mounts, f"{prefix}writable /data and /tmp mounted",
                ", ".join(f"{p}<-{n}" for p, n in sorted(mounts.items())))

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
        r.check(headless, f"service/{name_of(s)} is headless (clusterIP: None)")
        for p in s["spec"].get("ports", []):
            tp = p.get("targetPort", p["port"])
            target = named_ports.get(tp) if isinstance(tp, str) else tp
            r.check(target in numbered_ports, f"service/{name_of(s)} port {p.get('name')} -> container port",
                    f"{p['port']} -> {tp}")
            if headless:
                r.check(target == p["port"], f"service/{name_of(s)} port equals the container port (no proxy)")
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
    if profile == "prod":
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
    models = [d for n, d in sorted(deps.items()) if n != "feature-store"]
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
    images = {c["image"] for d in cluster.kind("Deployment") for c in d["spec"]["template"]["spec"]["containers"]}
    r.check(len(images) == 1, "one image for every service (see the Dockerfile)", ", ".join(sorted(images)))

    for d in cluster.kind("Deployment"):
        check_deployment(cluster, d, args.profile, r)
    check_network(cluster, r)

    for f in r.failures:
        print(f"FAIL {f}")
    print(f"{r.passed + len(r.failures)} checks, {len(r.failures)} failed")
    return 1 if r.failures else 0


if __name__ == "__main__":
    sys.exit(main())
