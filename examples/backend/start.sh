#!/bin/sh
# Serve /www with busybox httpd. /healthz and /version are written at start.
#
# FAIL_MODE (env, or the first line of /app/fail-mode from the build context):
#   none       healthy
#   crash      exit 1 at start (Kubernetes: CrashLoopBackOff; compose: exited)
#   unhealthy  serve, but never write /healthz, so every health check gets 404
#   leak-secret  print the API_TOKEN secret to stdout and stderr, then exit 1: the bug
#              gitopsctl's redaction exists for (the value must reach no log, JSON or commit)
#   incompatible  healthy on its own (/healthz and / answer 200), but its API moved:
#              /version answers 404 and /v2/version the version. The frontend, which asks
#              /version through the Service, cannot use it: only a check across the two
#              (gitopsctl's consistency check) sees the failure.
# REQUIRE_ENV: space-separated variable names that must be set (secrets from the
# env file); a missing one is a crash at start, naming the variable, never its value.
set -eu

mode="${FAIL_MODE:-}"
if [ -z "$mode" ] && [ -r /app/fail-mode ]; then
  read -r mode < /app/fail-mode || true
fi
mode="${mode:-none}"

for name in ${REQUIRE_ENV:-}; do
  if [ -z "$(printenv "$name" 2>/dev/null)" ]; then
    echo "$SERVICE: required environment variable $name is not set" >&2
    exit 1
  fi
done

version_file=/www/version
case "$mode" in
  none) echo "ok $SERVICE ${SOURCE_SHA:-unknown}" > /www/healthz ;;
  crash) echo "$SERVICE: FAIL_MODE=crash, exiting at start on purpose" >&2; exit 1 ;;
  unhealthy) rm -f /www/healthz; echo "$SERVICE: FAIL_MODE=unhealthy, /healthz will answer 404" >&2 ;;
  leak-secret)
    echo "$SERVICE: starting with API_TOKEN=${API_TOKEN:-}"
    echo "$SERVICE: FAIL_MODE=leak-secret, crashing; token was ${API_TOKEN:-}" >&2
    exit 1 ;;
  incompatible)
    echo "ok $SERVICE ${SOURCE_SHA:-unknown}" > /www/healthz
    mkdir -p /www/v2
    version_file=/www/v2/version
    echo "$SERVICE: FAIL_MODE=incompatible, /version will answer 404 (moved to /v2/version)" >&2 ;;
  *) echo "$SERVICE: unknown FAIL_MODE '$mode' (none|crash|unhealthy|leak-secret|incompatible)" >&2; exit 2 ;;
esac
echo "${SOURCE_SHA:-unknown}" > "$version_file"

echo "$SERVICE ${SOURCE_SHA:-unknown} listening on ${LISTEN}:${PORT}" >&2
exec httpd -f -v -p "${LISTEN}:${PORT}" -h /www
