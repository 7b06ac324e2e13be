# Sourced by install-deps.sh and etcd-from-module.sh, not run: a long build
# says what it is doing, how long it usually takes, and how far it is, on
# stderr, so that a first `make demo` or `make test` is not minutes of
# silence. stdout is left alone: the scripts' last line of stdout is a path
# the Makefile reads.
#
#   progress_run NAME WHAT USUALLY COMMAND [ARGS...]
#
# runs COMMAND in the foreground (its stdout goes to stderr) and prints
# "NAME: WHAT: 1m30s so far (USUALLY)" every PROGRESS_EVERY seconds (30 by
# default) until it ends, then how long it took; it returns COMMAND's exit
# status. With PROGRESS_LOG set to a file, COMMAND's stderr goes there
# instead, and each line says how many modules it downloaded ("go: downloading")
# and packages it compiled (the other lines, as `go build -v` prints one per
# package; "of about PROGRESS_TOTAL" when set); if COMMAND fails, the log is
# shown without those lines.
# The ticker is a subshell killed when COMMAND ends; if the script is
# terminated first (SIGTERM, SIGHUP), by an EXIT trap added to the caller's
# own; and, should no trap run (SIGKILL), it ends by itself within a second
# of the shell that started it.

progress_run() {
  local name=$1 what=$2 usually=$3
  shift 3
  local every=${PROGRESS_EVERY:-30} log=${PROGRESS_LOG:-} parent=$BASHPID start
  printf -v start '%(%s)T' -1
  local saved prev="" ticker
  saved=$(trap -p EXIT)
  if [ -n "$saved" ]; then
    local -a words
    eval "words=($saved)"
    prev=${words[2]}
  fi
  echo "$name: $what (usually $usually); a line every ${every}s until it is done" >&2
  (
    exec </dev/null >/dev/null
    next=$((start + every))
    while :; do
      sleep 1 </dev/null >/dev/null 2>&1
      kill -0 "$parent" 2>/dev/null || exit 0
      printf -v now '%(%s)T' -1
      ((now >= next)) || continue
      next=$((next + every))
      counts=""
      if [ -n "$log" ] && [ -s "$log" ]; then
        counts=$(awk -v total="${PROGRESS_TOTAL:-}" '/^go: downloading /{d++; next} /^[A-Za-z0-9._~\/-]+$/{p++}
          END{if (d) printf "; %d modules downloaded", d; printf "; %d%s packages compiled", p, total == "" ? "" : " of about " total}' "$log" 2>/dev/null) || counts=""
      fi
      echo "$name: $what: $(_progress_elapsed $((now - start))) so far (usually $usually)$counts" >&2
    done
  ) &
  ticker=$!
  # shellcheck disable=SC2064 # the ticker's pid, now
  trap "kill $ticker 2>/dev/null; $prev" EXIT
  local status=0
  if [ -n "$log" ]; then
    "$@" >&2 2>"$log" || status=$?
  else
    "$@" >&2 || status=$?
  fi
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if [ -n "$saved" ]; then eval "$saved"; else trap - EXIT; fi
  local end
  printf -v end '%(%s)T' -1
  if [ "$status" -eq 0 ]; then
    echo "$name: $what: done in $(_progress_elapsed $((end - start)))" >&2
  else
    echo "$name: $what: failed after $(_progress_elapsed $((end - start))) (exit status $status)" >&2
    if [ -n "$log" ]; then
      grep -Ev '^(go: downloading .*|[A-Za-z0-9._~/-]+)$' "$log" >&2 || true
    fi
  fi
  return "$status"
}

# _progress_elapsed SECONDS: 4m05s, or 42s.
_progress_elapsed() {
  if (($1 >= 60)); then
    printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
  else
    printf '%ds' "$1"
  fi
}
