#!/usr/bin/env bash
# Choose the gitopsctl this job runs, put it first on PATH, and check it is the one meant.
#
#   GITOPSCTL_INSTALL set     pip installs it into a fresh virtualenv in RUNNER_TEMP, made by
#                             GITOPSCTL_CI_PYTHON or python3; pip's own configuration (pip.conf,
#                             PIP_INDEX_URL, PIP_FIND_LINKS) says where packages come from
#   GITOPSCTL_CI_PYTHON set   that interpreter runs gitopsctl; in gitopsctl's own repository
#                             it runs this checkout's code (PYTHONPATH), checked below
#   neither                   gitopsctl's own repository installs the checkout (.[test]);
#                             any other uses the `gitopsctl` already on the runner's PATH
#
# Writes GITOPSCTL_DEFAULT_TEST_COMMAND for the test job: gitopsctl's own suite in its own
# repository, `gitopsctl check` in a homelab repository.
set -euo pipefail

workspace=$(realpath "$GITHUB_WORKSPACE")
install=${GITOPSCTL_INSTALL:-}
python=${GITOPSCTL_CI_PYTHON:-}

own_source=false
if [[ -f $workspace/gitopsctl/__init__.py ]] &&
    grep -qE '^name *= *"gitopsctl"' "$workspace/pyproject.toml" 2>/dev/null; then
  own_source=true
fi
if $own_source; then
  echo "GITOPSCTL_DEFAULT_TEST_COMMAND=python -m pytest" >>"$GITHUB_ENV"
  [[ -n $install || -n $python ]] || install=".[test]"
else
  echo "GITOPSCTL_DEFAULT_TEST_COMMAND=gitopsctl check" >>"$GITHUB_ENV"
fi

# Where an interpreter imports gitopsctl from, run outside the checkout so that a
# gitopsctl/ directory in the working directory cannot answer for it.
imported_from() {
  (cd / && "$1" -c 'import gitopsctl, os; print(os.path.dirname(os.path.realpath(gitopsctl.__file__)))')
}

if [[ -n $install ]]; then
  venv="$RUNNER_TEMP/gitopsctl-venv"
  "${python:-python3}" -m venv --clear "$venv"
  echo "pip install $install"
  # `.` and other relative requirements are the checkout's
  (cd "$workspace" && "$venv/bin/python" -m pip install --disable-pip-version-check -q "$install")
  py="$venv/bin/python"
  where=$(imported_from "$py")
  case "$where" in
    "$(realpath "$venv")"/*) ;;
    *) echo "::error::gitopsctl is imported from $where, not from the virtualenv that GITOPSCTL_INSTALL installed"
       exit 1 ;;
  esac
elif [[ -n $python ]]; then
  py=$python
  if $own_source; then
    export PYTHONPATH="$workspace"
    echo "PYTHONPATH=$workspace" >>"$GITHUB_ENV"
  fi
  where=$(imported_from "$py") || {
    echo "::error::$py cannot import gitopsctl: install it there, or set GITOPSCTL_INSTALL"
    exit 1
  }
  # in gitopsctl's own repository the code that runs must be this commit's
  if $own_source && [[ $where != "$workspace/gitopsctl" ]]; then
    echo "::error::gitopsctl is imported from $where, not from this checkout"
    exit 1
  fi
else
  found=$(command -v gitopsctl) || {
    echo "::error::no gitopsctl on the runner's PATH: set the variable GITOPSCTL_INSTALL (a pinned pip requirement), or GITOPSCTL_CI_PYTHON"
    exit 1
  }
  echo "$(gitopsctl --version) from $found, the runner's own"
  exit 0
fi

# `gitopsctl` and `python` mean this interpreter in every later step, ahead of anything
# else on PATH; the tools installed beside it (kubectl, docker-compose) come next.
if [[ -n $install ]]; then
  bin="$venv/bin"   # its own gitopsctl script and python
else
  bin="$RUNNER_TEMP/gitopsctl-bin"
  mkdir -p "$bin"
  printf '#!/usr/bin/env bash\nexec %q -m gitopsctl "$@"\n' "$py" >"$bin/gitopsctl"
  printf '#!/usr/bin/env bash\nexec %q "$@"\n' "$py" >"$bin/python"
  chmod +x "$bin/gitopsctl" "$bin/python"
  dirname "$py" >>"$GITHUB_PATH"
fi
echo "$bin" >>"$GITHUB_PATH"
echo "$("$bin/gitopsctl" --version) from $where, run by $py"
