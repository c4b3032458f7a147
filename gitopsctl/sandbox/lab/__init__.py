"""Real services for tests and the sandbox, started on loopback and owned by their caller.

dockerd      a private Docker engine (own data root, socket, no bridge, no iptables)
baseimage    a busybox base image made with `docker import` (nothing is pulled)
registry     Distribution v2 (Debian docker-registry) with htpasswd auth, Harbor stand-in
gitremote    a bare remote on disk plus a working clone
ports        free loopback ports

Nothing here imports the CLI or rich; docker is imported inside functions.
"""
