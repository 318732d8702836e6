#!/usr/bin/env bash
# Run the tests with the real clock moved to another date, to find tests that would fail as the
# real date moves on (a certificate, token or retention period measured from a fixed test date
# against today's clock).
#
#   bash tests/fake_clock.sh "2036-02-15 10:00" [pytest arguments...]
#
# Needs Debian's libfaketime (`apt-get install faketime`). The clock is moved by a relative
# offset, so that every process (the tests, the CLI they start, PostgreSQL, gpgsm, openssl) sees
# the same moved time, and it still runs on. Two workarounds for libfaketime 0.9.10, neither a
# change to what a test checks:
#   - the monotonic clock is left alone (FAKETIME_DONT_FAKE_MONOTONIC: with a moved monotonic
#     clock, Python's timed lock waits never time out), but then Python 3.11's time.sleep fails
#     with EINVAL (clock_nanosleep with TIMER_ABSTIME, libfaketime issue #426): for the run, a
#     sitecustomize.py in the venv replaces time.sleep with a select() wait (removed on exit);
#   - Dovecot runs on the real clock: under libfaketime its master process sees time jump back
#     and stops starting login processes for 180 s, and the IMAP tests time out.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 ]]; then
  echo "usage: bash tests/fake_clock.sh DATE [pytest arguments...]" >&2
  exit 2
fi
lib=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -n1 || true)
if [[ -z "$lib" ]]; then
  echo "libfaketime is not installed: apt-get install faketime" >&2
  exit 2
fi
target=$(date -u -d "$1" +%s)
shift
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if [[ -e "$site/sitecustomize.py" ]]; then
  echo "$site/sitecustomize.py already exists: not replacing it" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -f "$site/sitecustomize.py"; rm -rf "$work"' EXIT
cat > "$site/sitecustomize.py" <<'EOF'
# written by tests/fake_clock.sh for one run, and removed when it ends
import os

if os.environ.get("FAKETIME") and "faketime" in os.environ.get("LD_PRELOAD", ""):
    import select
    import time

    def _sleep(secs):
        if secs < 0:
            raise ValueError("sleep length must be non-negative")
        deadline = time.monotonic() + secs
        while (left := deadline - time.monotonic()) > 0:
            select.select([], [], [], left)

    time.sleep = _sleep
EOF
if dovecot=$(command -v dovecot || ls /usr/sbin/dovecot 2>/dev/null); then
  mkdir "$work/bin"
  printf '#!/bin/sh\nunset LD_PRELOAD FAKETIME FAKETIME_DONT_FAKE_MONOTONIC\nexec %s "$@"\n' "$dovecot" > "$work/bin/dovecot"
  chmod +x "$work/bin/dovecot"
  export PATH="$work/bin:$PATH"
fi
export FAKETIME="+$(( target - $(date -u +%s) ))" LD_PRELOAD="$lib" FAKETIME_DONT_FAKE_MONOTONIC=1
export CME_REQUIRE_SERVERS="${CME_REQUIRE_SERVERS-1}" HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE-ci}"
echo "tests run as of $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
.venv/bin/python -m pytest -p no:cacheprovider "$@"
