#!/usr/bin/env python3
"""Self-test of scripts/check_k8s.py: each component check must fail on a broken rendering.

Usage: test_check_k8s.py RENDERED.yaml   (a rendering with TLS, the collector and Consul, e.g.
`kubectl kustomize k8s/overlays/prod-consul`). The unmodified rendering must pass; each mutation
below (a read-only mount made writable, a client path dropped, a gRPC probe under TLS, a too-open
allow rule, a token in the config file, the collector egress removed, no advertised pod IP, the
metrics port closed to or open beyond the monitoring namespace, ...)
must make exactly the named check fail. Run by scripts/validate-k8s.sh.
"""

from __future__ import annotations

import copy
import io
import sys
from contextlib import redirect_stdout
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_k8s  # noqa: E402


def run(docs: list[dict]) -> list[str]:
    """The failures of check_k8s on docs (profile prod)."""
    cluster = check_k8s.Cluster(docs)
    r = check_k8s.Report()
    with redirect_stdout(io.StringIO()):
        for d in cluster.kind("Deployment"):
            check_k8s.check_deployment(cluster, d, "prod", r)
        check_k8s.check_network(cluster, r)
        check_k8s.check_tls(cluster, r)
        check_k8s.check_otel(cluster, r)
        check_k8s.check_prometheus(cluster, r)
        check_k8s.check_consul(cluster, r)
    return r.failures


def obj(docs, kind, name_prefix):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name_prefix))


def container(docs, name):
    return obj(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def cm_with(docs, key):
    return next(d for d in docs if d["kind"] == "ConfigMap" and key in (d.get("data") or {}))


def writable_tls_mount(docs):
    for m in container(docs, "churn")["volumeMounts"]:
        if m["mountPath"] == "/etc/augur/tls":
            m["readOnly"] = False


def drop_client_ca(docs):
    cm = cm_with(docs, "AUGUR_CLIENT__CA_PATH")
    del cm["data"]["AUGUR_CLIENT__CA_PATH"]


def world_readable_key(docs):
    for v in obj(docs, "Deployment", "risk")["spec"]["template"]["spec"]["volumes"]:
        if "secret" in v:
            v["secret"]["defaultMode"] = 0o644


def shared_secret(docs):
    for v in obj(docs, "Deployment", "risk")["spec"]["template"]["spec"]["volumes"]:
        if "secret" in v:
            v["secret"]["secretName"] = "augur-churn-tls"


def grpc_probe_under_tls(docs):
    c = container(docs, "feature-store")
    c["readinessProbe"] = {"grpc": {"port": 50051}, "periodSeconds": 5}


def open_delete_customer(docs):
    cm = cm_with(docs, "augur.toml")
    cm["data"]["augur.toml"] = cm["data"]["augur.toml"].replace(
        '"augur.featurestore.v1.FeatureStore/DeleteCustomer" = ["admin"]',
        '"augur.featurestore.v1.FeatureStore/DeleteCustomer" = ["admin", "gateway"]')


def no_train_rule(docs):
    cm = cm_with(docs, "augur.toml")
    cm["data"]["augur.toml"] = cm["data"]["augur.toml"].replace('"augur.churn.v1.Churn/Train" = ["admin"]', "")


def token_in_file(docs):
    cm = cm_with(docs, "augur.toml")
    cm["data"]["augur.toml"] += '\n[server.auth.tokens]\nadmin = "0123456789abcdef0123"\n'


def inline_token_env(docs):
    container(docs, "churn")["env"].append({"name": "AUGUR_SERVER__AUTH__TOKENS__ADMIN", "value": "x" * 20})


def no_collector_egress(docs):
    pol = obj(docs, "NetworkPolicy", "recommendation")
    pol["spec"]["egress"] = [e for e in pol["spec"]["egress"]
                             if not any(p.get("port") == 4317 for p in e.get("ports") or [])]


def endpoint_to_nowhere(docs):
    cm = cm_with(docs, "AUGUR_TELEMETRY__OTLP_ENDPOINT")
    cm["data"]["AUGUR_TELEMETRY__OTLP_ENDPOINT"] = "http://otel-collector.observability.svc.cluster.local:4317"


def undefined_exporter(docs):
    cm = cm_with(docs, "config.yaml")
    cm["data"]["config.yaml"] = cm["data"]["config.yaml"].replace("exporters: [debug]", "exporters: [otlp]", 1)


def no_pod_ip(docs):
    c = container(docs, "demand-forecast")
    c["env"] = [e for e in c["env"] if e["name"] != "POD_IP"]


def no_agent_egress(docs):
    pol = obj(docs, "NetworkPolicy", "churn")
    pol["spec"]["egress"] = [e for e in pol["spec"]["egress"]
                             if not any(p.get("port") == 8500 for p in e.get("ports") or [])]


def metrics_closed(docs):
    pol = obj(docs, "NetworkPolicy", "risk")
    pol["spec"]["ingress"] = [i for i in pol["spec"]["ingress"]
                              if not any(p.get("port") == 9464 for p in i.get("ports") or [])]


def metrics_open_to_all(docs):
    pol = obj(docs, "NetworkPolicy", "churn")
    for i in pol["spec"]["ingress"]:
        if any(p.get("port") == 9464 for p in i.get("ports") or []):
            i.pop("from", None)


def metrics_on_loopback(docs):
    cm = cm_with(docs, "AUGUR_TELEMETRY__PROMETHEUS_LISTEN")
    cm["data"]["AUGUR_TELEMETRY__PROMETHEUS_LISTEN"] = "127.0.0.1:9464"


def metrics_port_undeclared(docs):
    c = container(docs, "demand-forecast")
    c["ports"] = [p for p in c["ports"] if p.get("name") != "metrics"]


MUTATIONS = [
    (writable_tls_mount, "churn: augur-churn-tls mounted read-only"),
    (drop_client_ca, "certificate, key and CA paths set"),
    (world_readable_key, "risk: key files not world-readable"),
    (shared_secret, "risk: its own certificate Secret"),
    (grpc_probe_under_tls, "feature-store: readinessProbe is not a native gRPC probe"),
    (open_delete_customer, "only admin may call augur.featurestore.v1.FeatureStore/DeleteCustomer"),
    (no_train_rule, "only admin may call augur.churn.v1.Churn/Train"),
    (token_in_file, "no tokens in the config file"),
    (inline_token_env, "churn: AUGUR_SERVER__AUTH__TOKENS__ADMIN from a Secret"),
    (no_collector_egress, "recommendation -> otel-collector:4317 allowed"),
    (endpoint_to_nowhere, "OTLP endpoint names a rendered Service"),
    (undefined_exporter, "pipelines use only defined components"),
    (no_pod_ip, "demand-forecast: advertises the pod IP"),
    (no_agent_egress, "churn -> consul agent :8500 allowed"),
    (metrics_closed, "monitoring/prometheus -> risk:9464 allowed"),
    (metrics_open_to_all, "unlabelled pod elsewhere -> churn:9464 denied"),
    (metrics_on_loopback, "metrics listen beyond loopback"),
    (metrics_port_undeclared, "demand-forecast: metrics port 9464 is the container port named metrics"),
]


def main() -> int:
    docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
    base = run(docs)
    failed = 0
    print(f"  {'ok  ' if not base else 'FAIL'} unmodified rendering passes" + (f": {base}" if base else ""))
    failed += bool(base)
    for mutate, expected in MUTATIONS:
        broken = copy.deepcopy(docs)
        mutate(broken)
        fails = run(broken)
        ok = any(expected in f for f in fails)
        print(f"  {'ok  ' if ok else 'FAIL'} {mutate.__name__} is caught: {expected}"
              + ("" if ok else f" (failures: {fails or 'none'})"))
        failed += not ok
    print(f"{len(MUTATIONS) + 1} self-tests, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
