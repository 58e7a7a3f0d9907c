#!/usr/bin/env bash
# Runs the emulated-WAN comparison of the amst issue: for each scenario and
# congestion control, on the same emulated link in the same run:
#   iperf3 -P 1 (single TCP stream), iperf3 -P 8, AMST adaptive, AMST 8 fixed.
# Bounded: every tool runs for $SECONDS_PER_RUN seconds; the relay stops by
# itself. Results go to bench/results/wanem-<date>.tsv and stdout.
#
#   sudo bench/wanem/scenarios.sh            # all scenarios
#   SCENARIOS=a CCS=cubic bench/wanem/scenarios.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${SECONDS_PER_RUN:-12}
SCENARIOS=${SCENARIOS:-"a b c"}
CCS=${CCS:-"cubic bbr"}
ADDR_B=10.201.0.2
mkdir -p bench/results /tmp/wanem-bin
go build -o /tmp/wanem-bin/wanem ./bench/wanem
go build -o /tmp/wanem-bin/amstperf ./bench/wanem/amstperf
command -v iperf3 >/dev/null || { echo "iperf3 missing: apt-get install -y iperf3" >&2; exit 1; }
out=bench/results/wanem-$(date -u +%Y%m%dT%H%M%S).tsv
echo -e "scenario\tcc\ttool\tmbit_per_s\tdetail" | tee "$out"

bench/wanem/wanem.sh up >/dev/null
relay=""
cleanup() {
	[ -n "$relay" ] && kill "$relay" 2>/dev/null || true
	bench/wanem/wanem.sh down
}
trap cleanup EXIT

params() { # one-way delay, loss, rate (bit/s, 0 = none)
	case $1 in
	a) echo "25ms 0.01 1e9" ;;   # 50 ms RTT, 1 % loss, 1 Gbit/s
	b) echo "50ms 0.001 0" ;;    # 100 ms RTT, 0.1 % loss
	c) echo "12500us 0.005 2e8" ;; # 25 ms RTT, 0.5 % loss, 200 Mbit/s
	esac
}

iperf() { # cc streams
	# Wait until the previous one-shot server has gone.
	while ip netns exec amstB ss -Htln 'sport = :5201' | grep -q .; do sleep 0.2; done
	ip netns exec amstB iperf3 -s -B $ADDR_B -1 -D >/dev/null
	sleep 0.5
	ip netns exec amstA iperf3 -c $ADDR_B -t "$T" -P "$2" -C "$1" -J 2>/dev/null |
		python3 -c "
import json, sys
d = json.load(sys.stdin)
if 'error' in d: print('nan error=' + d['error'].replace(' ', '_'))
else: print('%.1f' % (d['end']['sum_received']['bits_per_second'] / 1e6))" || echo "nan"
}

amstrun() { # cc streams
	ip netns exec amstB /tmp/wanem-bin/amstperf server -listen $ADDR_B:7100 -cc "$1" -duration $((T + 20))s 2>/dev/null &
	local srv=$!
	sleep 0.3
	local line
	line=$(ip netns exec amstA /tmp/wanem-bin/amstperf client -connect $ADDR_B:7100 -cc "$1" -streams "$2" -time "${T}s" 2>/dev/null | grep '^amstperf' || true)
	kill $srv 2>/dev/null || true
	wait $srv 2>/dev/null || true
	sleep 1
	echo "$line"
}

for sc in $SCENARIOS; do
	read -r delay loss rate <<<"$(params "$sc")"
	runs=$((2 * 4))
	/tmp/wanem-bin/wanem -delay "$delay" -loss "$loss" -rate "$rate" -duration $(((T + 25) * runs * 2))s -stats 1h \
		>"bench/results/wanem-relay-$sc.log" 2>&1 &
	relay=$!
	sleep 0.5
	rtt=$(ip netns exec amstA ping -c 5 -i 0.2 -q $ADDR_B | awk -F/ '/rtt/ {print $5}')
	for cc in $CCS; do
		echo -e "$sc\t$cc\tping\t-\trtt_avg_ms=$rtt delay=$delay loss=$loss rate=$rate" | tee -a "$out"
		echo -e "$sc\t$cc\tiperf3-P1\t$(iperf "$cc" 1)\t" | tee -a "$out"
		echo -e "$sc\t$cc\tiperf3-P8\t$(iperf "$cc" 8)\t" | tee -a "$out"
		l=$(amstrun "$cc" 0)
		echo -e "$sc\t$cc\tamst-adaptive\t$(sed -n 's/.*mbit_per_s=\([0-9.]*\).*/\1/p' <<<"$l")\t$l" | tee -a "$out"
		l=$(amstrun "$cc" 8)
		echo -e "$sc\t$cc\tamst-8\t$(sed -n 's/.*mbit_per_s=\([0-9.]*\).*/\1/p' <<<"$l")\t$l" | tee -a "$out"
	done
	kill "$relay" 2>/dev/null || true
	wait "$relay" 2>/dev/null || true
	relay=""
done
echo "results: $out"
