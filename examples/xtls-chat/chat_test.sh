#!/usr/bin/env bash
# chat_test.sh drives two xtls-chat instances the way two people at two
# terminals would: it types lines into each one's standard input and waits
# for lines on each one's output. The instances run in one process, on
# xtls-chat's in-memory network (-loopback), because two processes cannot
# share that network; their input and output are named pipes.
#
# It plays two chats between alice@example.net/chat (listening) and
# bob@example.org/chat (dialing): on first contact both compare the keys
# (each side's view of the other's key must be the key the other shows as
# its own) and type yes, then they exchange a line each way and Alice quits;
# the second time the keys are pinned, no question is asked.
#
# Usage: chat_test.sh [COMMAND...]
#
# COMMAND runs xtls-chat (default: go run .); for example
#
#	./chat_test.sh ./xtls-chat
#
# Each wait gives up after $XTLS_CHAT_TIMEOUT seconds (default 20). The
# exit status is 0 if everything happened as expected.
set -euo pipefail

if [ "$#" -gt 0 ]; then
	cmd=("$@")
else
	cmd=(go run .)
fi
timeout=${XTLS_CHAT_TIMEOUT:-20}
dir=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
mkfifo "$dir/alice.in" "$dir/alice.out" "$dir/bob.in" "$dir/bob.out"

fail() {
	echo "FAIL: $*" >&2
	echo "--- transcript" >&2
	cat "$dir/transcript" >&2
	exit 1
}

# start runs one xtls-chat -loopback and opens the pipes, in the order it
# opens them: 3 types to Alice, 4 reads Alice, 5 types to Bob, 6 reads Bob.
# Opening a named pipe waits for the other end: if xtls-chat never opens
# it, a watchdog interrupts the wait.
start() {
	: >"$dir/transcript"
	"${cmd[@]}" -loopback "$dir" 2>"$dir/stderr" &
	pid=$!
	(sleep "$timeout" && kill -TERM $$) >/dev/null 2>&1 &
	local watchdog=$!
	exec 3>"$dir/alice.in" 4<"$dir/alice.out" 5>"$dir/bob.in" 6<"$dir/bob.out"
	kill "$watchdog" 2>/dev/null || true
}
trap 'fail "xtls-chat did not open its pipes: $(cat "$dir/stderr")"' TERM

# expect NAME TEXT reads NAME's output until a line contains TEXT; the
# line is left in $line.
expect() {
	local fd=4
	[ "$1" = bob ] && fd=6
	while IFS= read -r -t "$timeout" -u "$fd" line; do
		printf '%-5s | %s\n' "$1" "$line" >>"$dir/transcript"
		case $line in *"$2"*) return 0 ;; esac
	done
	fail "$1 never printed: $2"
}

# send NAME TEXT types TEXT and Enter on NAME's terminal.
send() {
	local fd=3
	[ "$1" = bob ] && fd=5
	printf '%-5s < %s\n' "$1" "$2" >>"$dir/transcript"
	printf '%s\n' "$2" >&"$fd"
}

# finish ends the input, reads what is left of the output and checks that
# the process exited with status 0.
finish() {
	exec 3>&- 5>&-
	while IFS= read -r -t "$timeout" -u 4 line; do printf 'alice | %s\n' "$line" >>"$dir/transcript"; done
	while IFS= read -r -t "$timeout" -u 6 line; do printf 'bob   | %s\n' "$line" >>"$dir/transcript"; done
	exec 4<&- 6<&-
	local status=0
	wait "$pid" || status=$?
	pid=
	[ "$status" -eq 0 ] || fail "xtls-chat -loopback exited with status $status: $(cat "$dir/stderr")"
}

# The key in a line such as "*** your key:  0A1B 2C3D ..." (16 groups).
key() {
	grep -oE '([0-9A-F]{4} ){15}[0-9A-F]{4}' <<<"$1" | head -n 1
}

# pinned KEY writes KEY as a pin file holds it: lowercase, no spaces.
pinned() {
	tr -d ' ' <<<"$1" | tr 'A-F' 'a-f'
}

echo "first contact"
start
expect alice "your key:"
alice_key=$(key "$line")
expect alice "waiting for a chat"
expect bob "your key:"
bob_key=$(key "$line")
expect bob "alice@example.net's key:"
[ "$(key "$line")" = "$alice_key" ] || fail "Bob sees another key for Alice than hers"
expect bob "type yes"
expect alice "bob@example.org's key:"
[ "$(key "$line")" = "$bob_key" ] || fail "Alice sees another key for Bob than his"
expect alice "type yes"
send alice yes
send bob yes
expect alice "pinned bob@example.org's key"
expect bob "pinned alice@example.net's key"
expect alice "chat with bob@example.org/chat started"
expect bob "chat with alice@example.net/chat started"
send bob "hello from the script"
expect alice "bob@example.org> hello from the script"
send alice "hello back, <b>&amp; no markup</b>"
expect bob "alice@example.net> hello back, <b>&amp; no markup</b>"
send alice /quit
expect alice "you left the chat"
expect bob "alice@example.net left the chat"
finish
grep -q "$(pinned "$bob_key")" "$dir/state/alice@example.net/pins.json" ||
	fail "Alice's pin file does not hold Bob's key"
grep -q "$(pinned "$alice_key")" "$dir/state/bob@example.org/pins.json" ||
	fail "Bob's pin file does not hold Alice's key"
cat "$dir/transcript"

echo "pinned"
start
expect alice "bob@example.org's key is the one pinned"
expect bob "alice@example.net's key is the one pinned"
expect bob "chat with alice@example.net/chat started"
expect alice "chat with bob@example.org/chat started"
send alice "no question this time"
expect bob "alice@example.net> no question this time"
send bob /quit
expect alice "bob@example.org left the chat"
finish
if grep -q "first contact" "$dir/transcript"; then
	fail "the second chat asked about the keys again"
fi
cat "$dir/transcript"
echo PASS
