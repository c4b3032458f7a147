#!/bin/sh
# Work forever, touching /tmp/heartbeat every second (the compose healthcheck reads it).
# The first line of /app/fail-mode (from the build context) picks the release's behaviour:
#   none   healthy      crash   exit 1 at start, every time (with restart: a crash loop)
set -eu
read -r mode < /app/fail-mode || true
case "${mode:-none}" in
  none) ;;
  crash) echo "worker: fail-mode crash, exiting at start on purpose" >&2; exit 1 ;;
  *) echo "worker: unknown fail-mode '$mode' (none|crash)" >&2; exit 2 ;;
esac
echo "worker ${SOURCE_SHA} started" >&2
while :; do
  touch /tmp/heartbeat
  sleep 1
done
