#!/bin/sh
# Serve /www with busybox httpd. /healthz and /version are written at start.
#
# FAIL_MODE (env, or the first line of /app/fail-mode from the build context):
#   none       healthy
#   crash      exit 1 at start (Kubernetes: CrashLoopBackOff; compose: exited)
#   unhealthy  serve, but never write /healthz, so every health check gets 404
#   leak-secret  print the API_TOKEN secret to stdout and stderr, then exit 1: the bug
#              gitopsctl's redaction exists for (the value must reach no log, JSON or commit)
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

case "$mode" in
  none) echo "ok $SERVICE ${SOURCE_SHA:-unknown}" > /www/healthz ;;
  crash) echo "$SERVICE: FAIL_MODE=crash, exiting at start on purpose" >&2; exit 1 ;;
  unhealthy) rm -f /www/healthz; echo "$SERVICE: FAIL_MODE=unhealthy, /healthz will answer 404" >&2 ;;
  leak-secret)
    echo "$SERVICE: starting with API_TOKEN=${API_TOKEN:-}"
    echo "$SERVICE: FAIL_MODE=leak-secret, crashing; token was ${API_TOKEN:-}" >&2
    exit 1 ;;
  *) echo "$SERVICE: unknown FAIL_MODE '$mode' (none|crash|unhealthy|leak-secret)" >&2; exit 2 ;;
esac
echo "${SOURCE_SHA:-unknown}" > /www/version

echo "$SERVICE ${SOURCE_SHA:-unknown} listening on ${LISTEN}:${PORT}" >&2
exec httpd -f -v -p "${LISTEN}:${PORT}" -h /www
