#!/bin/sh
# Runs the command as the unprivileged `edge` user. When started as root (Fly mounts
# volumes owned by root), first hand the data directory to `edge`.
set -eu
data_dir=$(dirname "${SQLITE_PATH:-/data/edge-gateway.db}")
if [ "$(id -u)" = "0" ]; then
  mkdir -p "$data_dir"
  chown edge:edge "$data_dir"
  exec setpriv --reuid=edge --regid=edge --init-groups "$@"
fi
exec "$@"
