#!/usr/bin/env bash
# Track performance over history: run the asv suite on each of the last N commits of the
# current branch (default 10) and publish the HTML report (graphs per benchmark over
# commits, regressions flagged).  Results accumulate in asv_benchmarks/.asv/results, so
# keep that directory between runs (a CI cache or artifact) and each run only measures
# the commits it has not measured yet.
#
#   asv_benchmarks/track.sh                 # last 10 commits, full suite
#   asv_benchmarks/track.sh 30              # last 30 commits
#   asv_benchmarks/track.sh 5 -b bench_store --quick   # extra arguments go to `asv run`
#
# Needs: git history (not a shallow clone of depth < N), asv (pip install -e ".[bench]"),
# a C compiler (each commit is built in an asv virtualenv).  The report ends up in
# asv_benchmarks/.asv/html (open index.html, or `asv preview` to serve it).
# Environment: NOVA_TRACK_BRANCH names the branch the graphs follow (default: the one
# checked out, else main).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
N=${1:-10}
if [ $# -gt 0 ]; then shift; fi
case "$N" in
    ''|*[!0-9]*|0) echo "track.sh: expected N as a number of commits >= 1, got '$N'" >&2; exit 2 ;;
esac
cd "$HERE"
BRANCH=${NOVA_TRACK_BRANCH:-$(git -C "$ROOT" symbolic-ref --quiet --short HEAD || echo main)}

# A config beside the real one that follows this branch (asv publish draws one graph
# line per configured branch, and fails on a branch that does not exist).
CONF="$HERE/.asv/track.conf.json"
mkdir -p "$HERE/.asv"
python - "$HERE/asv.conf.json" "$CONF" "$ROOT" "$BRANCH" <<'PY'
import json, sys
src, dst, root, branch = sys.argv[1:]
conf = json.load(open(src))
conf.update(repo=root, branches=[branch], benchmark_dir="../benchmarks", env_dir="env",
            results_dir="results", html_dir="html")
json.dump(conf, open(dst, "w"), indent=4)
PY

HASHES="$HERE/.asv/track-commits.txt"
git -C "$ROOT" rev-list --first-parent --max-count="$N" HEAD > "$HASHES"
echo "== asv: $(wc -l < "$HASHES") commits of $BRANCH, newest $(head -c 12 "$HASHES") =="
asv machine --yes --config "$CONF" > /dev/null
# --skip-existing-successful: commits measured by an earlier run are not measured again
asv run --config "$CONF" --skip-existing-successful --show-stderr "$@" "HASHFILE:$HASHES"
asv publish --config "$CONF"
echo "== report: $HERE/.asv/html/index.html (serve it with: asv preview --config $CONF) =="
