#!/usr/bin/env bash
# Scheduled key rotation as a CI job runs it, with the `keyplane` CLI and curl only:
# a service key in use at the edge; the job rotates every key past its age with a grace
# period; the new key is deployed and verified; the old one keeps working until the grace
# ends, then the edge refuses it.
#
# Reads: KEYPLANE (the binary), KEYPLANE_URL and KEYPLANE_API_KEY (a management key),
# EDGE_URL (an edge replicating that control plane), GRACE_SECONDS (default 10).
# Run by tests/tests/e2e/cli.rs; the README's "Scripted rotation" is the same job.
set -euo pipefail

: "${KEYPLANE:?}" "${KEYPLANE_URL:?}" "${KEYPLANE_API_KEY:?}" "${EDGE_URL:?}"
GRACE_SECONDS="${GRACE_SECONDS:-10}"
export KEYPLANE_URL KEYPLANE_API_KEY

fail() { echo "scheduled-rotation: FAIL: $*" >&2; exit 1; }
status_with() { curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $1" "$EDGE_URL/hello"; }
# until_status KEY WANT SECONDS: polls the edge until KEY gets WANT.
until_status() {
  local deadline=$((SECONDS + $3)) got
  while :; do
    got=$(status_with "$1")
    [ "$got" = "$2" ] && return 0
    [ $SECONDS -ge $deadline ] && fail "wanted $2 within $3 s, the edge still answers $got"
    sleep 0.2
  done
}

# A service key, deployed and in use.
OLD=$("$KEYPLANE" keys create --name billing-service -e live --field key)
OLD_ID=$("$KEYPLANE" keys list --name billing-service --field id)
until_status "$OLD" 200 15
echo "scheduled-rotation: $OLD_ID admitted at the edge"
sleep 2 # older than the job's --older-than 1s

# What the job would do, then the job: every key older than 1 s (its own key aside).
PLANNED=$("$KEYPLANE" keys rotate-due --older-than 1s --dry-run --field id)
[ "$PLANNED" = "$OLD_ID" ] || fail "the dry run planned '$PLANNED', not $OLD_ID alone"
ROTATED=$("$KEYPLANE" keys rotate-due --older-than 1s --grace "${GRACE_SECONDS}s" --jsonl)
rotated_at=$SECONDS
[ "$(printf '%s\n' "$ROTATED" | wc -l)" = 1 ] || fail "rotated more than one key: $ROTATED"
NEW=$(printf '%s' "$ROTATED" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
case "$NEW" in sk_live_*) ;; *) fail "no new key in: $ROTATED" ;; esac

# Deploy and verify the new key; the old one still works during the grace period.
until_status "$NEW" 200 15
[ "$(status_with "$OLD")" = 200 ] || fail "the old key stopped before its grace period ended"
[ $((SECONDS - rotated_at)) -lt "$GRACE_SECONDS" ] || fail "the check came after the grace period"
echo "scheduled-rotation: new key admitted; the old one still admitted $((SECONDS - rotated_at)) s into a ${GRACE_SECONDS} s grace"

# After the grace period the edge refuses the old key, and the new one goes on.
until_status "$OLD" 401 $((GRACE_SECONDS + 15))
echo "scheduled-rotation: the old key refused $((SECONDS - rotated_at)) s after the rotation"
[ "$(status_with "$NEW")" = 200 ] || fail "the new key stopped working"
[ "$("$KEYPLANE" keys get "$OLD_ID" --field status)" = expired ] || fail "the old key is not expired"
echo "scheduled-rotation: ok"
