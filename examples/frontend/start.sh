#!/bin/sh
# Serve /www with busybox httpd. /healthz and /version are written at start.
# /api/<path> is answered by asking the backend through the Kubernetes Service `backend`
# (www/cgi-bin/index.cgi, from BACKEND_SERVICE_HOST/_PORT); without that Service it answers
# 502 and says so, while /healthz stays healthy: the frontend itself is fine.
#
# FAIL_MODE (env, or the first line of /app/fail-mode from the build context):
#   none       healthy
#   crash      exit 1 at start (Kubernetes: CrashLoopBackOff; compose: exited)
#   unhealthy  serve, but never write /healthz, so every health check gets 404
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
  *) echo "$SERVICE: unknown FAIL_MODE '$mode' (none|crash|unhealthy)" >&2; exit 2 ;;
esac
echo "${SOURCE_SHA:-unknown}" > /www/version
# Directories, so that httpd answers /api/version with 302 -> /api/version/ and then runs
# cgi-bin/index.cgi for it (a directory URL with no index.html). Made here, not in the
# Dockerfile: git cannot hold an empty directory, and a RUN step would need a build container.
mkdir -p /www/api/version /www/api/healthz

echo "$SERVICE ${SOURCE_SHA:-unknown} listening on ${LISTEN}:${PORT}" >&2
exec httpd -f -v -p "${LISTEN}:${PORT}" -h /www
