#!/bin/sh
# Installs what the test suite needs and the machine may lack: the Debian
# packages of the XMPP servers the integration tests start on 127.0.0.1,
# xmllint (libxml2-utils), which validates docs/protocol.md's examples
# against docs/xtls.xsd (go has no XML Schema validator), tmux for the
# terminal tests of the examples, and ss (iproute2), with which a test
# destroys the sockets of a server's proxy.
# Idempotent: does nothing when everything is present.
set -eu

need=""
command -v prosody >/dev/null 2>&1 || need="$need prosody"
command -v prosodyctl >/dev/null 2>&1 || need="$need prosody"
lua5.4 -e 'require "lunbound"' >/dev/null 2>&1 || need="$need lua-unbound"
command -v ejabberdctl >/dev/null 2>&1 || need="$need ejabberd"
command -v erl >/dev/null 2>&1 || need="$need ejabberd"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v xmllint >/dev/null 2>&1 || need="$need libxml2-utils"
# The chat's terminal test reads the screen of a real terminal emulator.
command -v tmux >/dev/null 2>&1 || need="$need tmux"
# The test of a proxy that dies destroys its sockets with ss -K.
command -v ss >/dev/null 2>&1 || need="$need iproute2"

if [ -z "$need" ]; then
	exit 0
fi

echo "install-deps: installing$need" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $need lua-unbound >/dev/null
