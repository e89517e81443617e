#!/usr/bin/env bash
# Starts what the tests use besides cargo, installing it where it is missing (Debian packages;
# moto from PyPI): the
# machine's PostgreSQL (the orchestrator store's tests run on it as well as on SQLite) and
# Podman's Docker-compatible socket (the worker daemon's container tests), and Debian's Chromium
# with chromedriver (the orchestrator console's browser tests), and moto's S3-compatible server
# (the worker's S3 results-store tests). Prints the
# environment the tests need; run it as
#
#   eval "$(scripts/services.sh)" && cargo test --workspace --locked
#
# Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/postgres.sh >&2
scripts/chromium.sh >&2
scripts/s3-service.sh
scripts/podman-service.sh
