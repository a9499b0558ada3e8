#!/usr/bin/env bash
# Makes a fresh machine ready to build and test hint, idempotently and quickly when
# already done: a project-local virtualenv (.venv) whose torch 2.11.0 wheel provides
# libtorch for tch (LIBTORCH_USE_PYTORCH=1), plus the tests' oracles and servers (moto's S3,
# kubernetes-validate). protoc comes from a crate; the things installed outside the project,
# when missing, are WordNet 3.0 (Debian's wordnet-base), libjpeg-turbo's headers and static
# library (Debian's libjpeg62-turbo-dev, the JPEG decoder the worker links in), Chromium
# (Debian's chromium, which the report test runs headless) and kubectl (the deploy test
# renders the manifests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Installs the Debian package $1 (as root, or through sudo), updating the package lists
# once if the first try fails; a nonzero status if it cannot.
install_debian() {
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get install -y -q --no-install-recommends "$1" >/dev/null \
        || { $sudo apt-get update -q >/dev/null \
             && $sudo apt-get install -y -q --no-install-recommends "$1" >/dev/null; }
}

command -v cargo >/dev/null || { echo "bootstrap: cargo is not installed (https://rustup.rs)" >&2; exit 1; }
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || { echo "bootstrap: $PYTHON is not installed" >&2; exit 1; }

# WordNet 3.0 noun database (concept hierarchies of ImageNet-style labels): Debian's
# wordnet-base, the one system package hint itself needs. HINT_WORDNET points elsewhere.
wordnet_dir=${HINT_WORDNET:-/usr/share/wordnet}
if [[ ! -f "$wordnet_dir/data.noun" || ! -f "$wordnet_dir/index.noun" ]]; then
    if [[ -n "${HINT_WORDNET:-}" ]]; then
        echo "bootstrap: HINT_WORDNET=$HINT_WORDNET has no data.noun and index.noun" >&2
        exit 1
    fi
    echo "bootstrap: installing WordNet 3.0 (Debian package wordnet-base)"
    if ! install_debian wordnet-base || [[ ! -f /usr/share/wordnet/data.noun ]]; then
        echo "bootstrap: could not install wordnet-base; install it (apt-get install wordnet-base)" \
             "or set HINT_WORDNET to a directory with the WordNet 3.0 data.noun and index.noun" >&2
        exit 1
    fi
fi

# libjpeg-turbo (PIL's JPEG decoder): worker/build.rs links its static library into the
# worker, which then decodes JPEGs to PIL's pixels, faster. Without it the build falls back
# to zune-jpeg and says so; so a failed install is a warning here, not an error.
if ! echo '#include <stdio.h>
#include <jpeglib.h>' | cc -E - >/dev/null 2>&1 || [[ ! -e $(cc -print-file-name=libjpeg.a) ]]; then
    echo "bootstrap: installing libjpeg-turbo (Debian package libjpeg62-turbo-dev)"
    install_debian libjpeg62-turbo-dev \
        || echo "bootstrap: warning: could not install libjpeg62-turbo-dev; JPEGs will decode" \
                "with zune-jpeg (slower, not PIL's pixels exactly)" >&2
fi

# Headless Chromium (Debian's chromium) renders report.html in the report test.
if ! command -v chromium >/dev/null; then
    echo "bootstrap: installing Chromium (Debian package chromium, for the report test)"
    if ! install_debian chromium || ! command -v chromium >/dev/null; then
        echo "bootstrap: could not install chromium; install it (apt-get install chromium)" >&2
        exit 1
    fi
fi

# kubectl renders deploy/kubernetes (its built-in kustomize) in the deploy test. Debian's
# kubernetes-client is old (bookworm: 1.20, kustomize v2): the test needs kustomize v5
# (kubectl >= 1.27) and says so; a newer kubectl already on the PATH is kept.
if ! command -v kubectl >/dev/null; then
    echo "bootstrap: installing kubectl (Debian package kubernetes-client, for the deploy test)"
    if ! install_debian kubernetes-client || ! command -v kubectl >/dev/null; then
        echo "bootstrap: could not install kubectl; install it (apt-get install kubernetes-client," \
             "or kubectl >= 1.27 from https://kubernetes.io/docs/tasks/tools/)" >&2
        exit 1
    fi
fi
kubectl_version=$(kubectl version --client 2>/dev/null || true)
if ! grep -q '^Kustomize Version: v[5-9]' <<<"$kubectl_version"; then
    echo "bootstrap: warning: $(command -v kubectl) has no kustomize v5 (kubectl >= 1.27 has);" \
         "the deploy test will fail until a newer kubectl is on the PATH" >&2
fi

stamp=".venv/.hint-requirements-$(sha256sum scripts/requirements.txt | cut -c1-16)"
if [[ -f "$stamp" ]]; then
    exit 0
fi
if [[ ! -x .venv/bin/python ]]; then
    echo "bootstrap: creating .venv"
    "$PYTHON" -m venv .venv
fi
echo "bootstrap: installing Python packages into .venv (torch is ~4.7 GB the first time)"
.venv/bin/pip install --disable-pip-version-check --quiet -r scripts/requirements.txt
version=$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')
if [[ "$version" != "2.11.0" ]]; then
    echo "bootstrap: .venv has torch $version, tch 0.24 needs 2.11.0" >&2
    exit 1
fi
rm -f .venv/.hint-requirements-*
touch "$stamp"
echo "bootstrap: ready (torch $version)"
