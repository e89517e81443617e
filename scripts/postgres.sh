#!/usr/bin/env bash
# Starts the machine's PostgreSQL and makes the role the tests and a local orchestrator use:
# `gpumesh` (password `gpumesh`, may create databases) on 127.0.0.1:5432. Safe to run twice.
# The store tests read GPUMESH_TEST_POSTGRES (default postgres://gpumesh:gpumesh@127.0.0.1:5432/postgres)
# and make a fresh database per test.
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
    else
        echo "PostgreSQL is not installed: install it (apt-get install postgresql) and run this again" >&2
        exit 1
    fi
fi

version=$(pg_lsclusters --no-header | awk 'NR==1 {print $1}')
cluster=$(pg_lsclusters --no-header | awk 'NR==1 {print $2}')
if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    cluster=main
    pg_createcluster "$version" "$cluster" >/dev/null
fi
if ! pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $4}' | grep -q online; then
    pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start
fi
for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.2
done
pg_isready -h 127.0.0.1 -p 5432

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else su postgres -c "$(printf '%q ' "$@")"; fi
}
as_postgres psql -q -v ON_ERROR_STOP=1 -d postgres -c "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gpumesh') THEN
        CREATE ROLE gpumesh LOGIN CREATEDB PASSWORD 'gpumesh';
    END IF;
END \$\$;"
echo "PostgreSQL $version/$cluster is up: postgres://gpumesh:gpumesh@127.0.0.1:5432/postgres"
