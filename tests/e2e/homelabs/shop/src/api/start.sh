#!/bin/sh
# Serve /www; /healthz and /version are written at start. The first line of
# /app/fail-mode (from the build context) picks the release's behaviour:
#   none   healthy      crash   exit 1 at start, every time (a crash loop)
set -eu
read -r mode < /app/fail-mode || true
case "${mode:-none}" in
  none) echo "ok $SERVICE ${SOURCE_SHA}" > /www/healthz ;;
  crash) echo "$SERVICE: fail-mode crash, exiting at start on purpose" >&2; exit 1 ;;
  *) echo "$SERVICE: unknown fail-mode '$mode' (none|crash)" >&2; exit 2 ;;
esac
echo "${SOURCE_SHA}" > /www/version
echo "$SERVICE ${SOURCE_SHA} listening on ${LISTEN}:${PORT}" >&2
exec httpd -f -v -p "${LISTEN}:${PORT}" -h /www
