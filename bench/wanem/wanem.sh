#!/usr/bin/env bash
# Creates or removes the two network namespaces that bench/wanem links:
#   amstA (tunA 10.201.0.1) <-> wanem relay <-> amstB (tunB 10.201.0.2)
# Traffic between the addresses only ever crosses the relay; nothing is
# routed anywhere else. Needs root, iproute2 and /dev/net/tun.
#
#   wanem.sh up      create namespaces and TUN devices
#   wanem.sh down    remove them (idempotent)
#   wanem.sh status  show them
set -euo pipefail
NS_A=${NS_A:-amstA}
NS_B=${NS_B:-amstB}
ADDR_A=${ADDR_A:-10.201.0.1}
ADDR_B=${ADDR_B:-10.201.0.2}
MTU=${MTU:-1500}

up() {
	down
	ip netns add "$NS_A"
	ip netns add "$NS_B"
	ip -n "$NS_A" link set lo up
	ip -n "$NS_B" link set lo up
	ip -n "$NS_A" tuntap add dev tunA mode tun
	ip -n "$NS_B" tuntap add dev tunB mode tun
	ip -n "$NS_A" addr add "$ADDR_A" peer "$ADDR_B" dev tunA
	ip -n "$NS_B" addr add "$ADDR_B" peer "$ADDR_A" dev tunB
	ip -n "$NS_A" link set tunA mtu "$MTU" txqueuelen 1000 up
	ip -n "$NS_B" link set tunB mtu "$MTU" txqueuelen 1000 up
	echo "wanem: $NS_A/tunA $ADDR_A <-> $NS_B/tunB $ADDR_B ready; start the relay: wanem -delay 25ms -loss 0.01 -rate 1e9"
}

down() {
	for ns in "$NS_A" "$NS_B"; do
		if ip netns list | grep -qw "$ns"; then
			ip netns del "$ns"
		fi
	done
}

status() {
	for ns in "$NS_A" "$NS_B"; do
		echo "== $ns"
		ip -n "$ns" addr show 2>/dev/null || echo "(absent)"
	done
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
*)
	echo "usage: $0 up|down|status" >&2
	exit 2
	;;
esac
