#!/bin/sh
# GET /api/<path>/ -> the backend's /<path>, asked through the Kubernetes Service `backend`
# only: the kubelet puts its cluster IP and port into BACKEND_SERVICE_HOST/_PORT, and busybox
# httpd hands its own environment to every CGI child (networking/httpd.c keeps clearenv()
# under #if 0). No name is resolved and no other address is tried.
#
# httpd runs this script for a directory URL that has no index.html (its CGI_INDEX case);
# /api/version without the slash is answered 302 -> /api/version/ first, because start.sh
# makes /www/api/version a directory. REQUEST_URI is then the path httpd mapped: already
# percent-decoded and with ".." segments resolved (an encoded "/" is refused before we run).
# It is still request input, so it is checked here before it goes anywhere, and it reaches
# wget as one quoted argument, never through eval or a shell string.
set -u

# Answers a status and one line of plain text, then ends the request.
reply() {
  printf 'Status: %s\r\nContent-Type: text/plain\r\n\r\n%s\n' "$1" "$2"
  exit 0
}

case "${REQUEST_METHOD:-}" in
  GET | HEAD) ;;
  *) reply "405 Method Not Allowed" "frontend: /api/ answers GET only" ;;
esac
uri="${REQUEST_URI:-}"
case "$uri" in
  /api/*) ;;
  *) reply "404 Not Found" "frontend: not found (only /api/<path> is answered by the backend)" ;;
esac
path="${uri#/api/}"
case "$path" in
  *[!A-Za-z0-9/_.-]* | *..*)
    reply "400 Bad Request" "frontend: refused: an /api/ path may hold only letters, digits and / _ . - (no '..', no query)" ;;
esac
path="${path%/}"

host="${BACKEND_SERVICE_HOST:-}"
port="${BACKEND_SERVICE_PORT:-}"
[ -n "$host" ] || reply "502 Bad Gateway" "frontend: no backend Service (BACKEND_SERVICE_HOST is not set)"
case "$host" in
  *[!0-9A-Za-z.:-]*) reply "502 Bad Gateway" "frontend: BACKEND_SERVICE_HOST is not an address" ;;
  *:*) host="[$host]" ;;  # an IPv6 cluster IP
esac
case "$port" in
  '' | *[!0-9]*) reply "502 Bad Gateway" "frontend: BACKEND_SERVICE_PORT is not a port number" ;;
esac
url="http://$host:$port/$path"

# -Y off: an http_proxy in the pod's environment must not take the request elsewhere.
# `timeout` is the only deadline: Debian's busybox is built without FEATURE_WGET_TIMEOUT, so
# wget has no timeout of its own (and its -T crashes it). wget -q prints nothing on success,
# so on failure the output is its error message.
if body=$(timeout 5 wget -q -Y off -O - "$url" 2>&1); then
  printf 'Content-Type: text/plain\r\n\r\n%s\n' "$body"
  exit 0
fi
why=$(printf '%s\n' "$body" | tail -n 1)
why="${why#wget: }"
reply "502 Bad Gateway" "frontend: backend $url failed: ${why:-no answer within 5 s}"
