#!/usr/bin/env bash
# Installs moto's S3-compatible server (`moto_server`, from PyPI's `moto[server]`) where it is
# missing: the worker's S3 results-store tests start one per test, with request signing checked,
# and fail (never skip) without it. Prints the GPUMESH_MOTO_SERVER line to export; safe to run
# twice.
set -euo pipefail

found() {
    command -v moto_server >/dev/null && moto_server --help >/dev/null 2>&1
}

if ! found; then
    echo "s3-service: installing moto[server] from PyPI" >&2
    python3 -m pip install --quiet "moto[server]==5.2.1" >&2
    hash -r
fi
if ! found; then
    echo "moto_server is missing and could not be installed: python3 -m pip install 'moto[server]'" >&2
    exit 1
fi
echo "export GPUMESH_MOTO_SERVER=$(command -v moto_server)"
