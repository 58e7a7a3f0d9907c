package acp

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"testing"

	"github.com/dwcp/dwcp/acp/internal/pbft"
)

// simNet is a deterministic network for pbft replica cores: every message
// in flight waits in a bag, and the seeded scheduler delivers a random one
// (reordering), drops some (loss) and cuts links (partitions).
type simNet struct {
	rng      *rand.Rand
	inflight []simMsg
	group    []int
}

type simMsg struct {
	from, to uint32
	frame    []byte
}

type simHost struct {
	id      uint32
	client  *pbft.Client
	pending *pbft.Message
	age     int
	// owned: the epochs at which this host was told, by f+1 replicas,
	// that it may resume (ConfirmResume succeeded).
	resumed []uint64
	cmd     Command
}

// TestOwnershipSafetyRandomized runs the ownership registry on 4 PBFT
// replica cores under seeded loss, reordering and partitions, with four
// hosts racing to hand VMs over and resume them with guessed epochs. It
// checks, over the replicas' committed histories: one owner per (vm,
// epoch), no resume accepted with a stale epoch, identical results on all
// replicas, and every client-accepted result equal to the committed one.
func TestOwnershipSafetyRandomized(t *testing.T) {
	seeds := []int64{1, 2, 3, 4, 5, 6}
	if testing.Short() {
		seeds = seeds[:2]
	}
	// ACP_SAFETY_SEEDS=N runs seeds 1..N instead (a longer soak).
	if n, err := strconv.Atoi(os.Getenv("ACP_SAFETY_SEEDS")); err == nil && n > 0 {
		seeds = seeds[:0]
		for i := 1; i <= n; i++ {
			seeds = append(seeds, int64(i))
		}
	}
	var handovers, resumes, stale int
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			h, r, s := runSafetySim(t, seed)
			handovers, resumes, stale = handovers+h, resumes+r, stale+s
		})
	}
	// A workload without handovers or stale resumes would test nothing.
	if handovers == 0 || resumes == 0 || stale == 0 {
		t.Fatalf("workload too weak: %d handovers, %d resumes accepted, %d stale resumes refused", handovers, resumes, stale)
	}
}

func runSafetySim(t *testing.T, seed int64) (handovers, resumes, staleRefused int) {
	const n = 4
	rng := rand.New(rand.NewSource(seed))
	pubs := make([]ed25519.PublicKey, n)
	privs := make([]ed25519.PrivateKey, n)
	for i := range privs {
		s := sha256.Sum256([]byte(fmt.Sprintf("sim-%d", i)))
		privs[i] = ed25519.NewKeyFromSeed(s[:])
		pubs[i] = privs[i].Public().(ed25519.PublicKey)
	}
	net := &simNet{rng: rng, group: make([]int, n)}
	regs := make([]*Registry, n)
	reps := make([]*pbft.Replica, n)
	hosts := make([]*simHost, n)
	history := make([][]pbft.Execution, n)
	for i := 0; i < n; i++ {
		cfg := pbft.DefaultConfig(uint32(i), n)
		cfg.Keys, cfg.PrivateKey = pubs, privs[i]
		cfg.CheckpointInterval, cfg.Window, cfg.ViewChangeTicks, cfg.RetransmitTicks = 4, 16, 30, 5
		regs[i] = NewRegistry()
		r, err := pbft.NewReplica(cfg, registryApp{regs[i]})
		if err != nil {
			t.Fatal(err)
		}
		reps[i] = r
		hosts[i] = &simHost{id: uint32(i), client: pbft.NewClient(uint32(i), privs[i], pubs, n, 0)}
	}
	hostName := func(i int) string { return fmt.Sprintf("h%d", i) }
	vms := []string{"vm-a", "vm-b"}
	lossRate := 0.1

	type acceptance struct {
		client uint32
		ts     uint64
		res    Result
	}
	var accepted []acceptance
	deliverOutput := func(from uint32, o pbft.Output) {
		history[from] = append(history[from], o.Executed...)
		for _, ob := range o.Send {
			frame := ob.Msg.Encode()
			if ob.To == pbft.Broadcast {
				for to := uint32(0); to < n; to++ {
					if to != from {
						net.inflight = append(net.inflight, simMsg{from, to, frame})
					}
				}
			} else {
				net.inflight = append(net.inflight, simMsg{from, ob.To, frame})
			}
		}
	}
	send := func(from uint32, m *pbft.Message) {
		deliverOutput(from, reps[from].Step(from, m))
		frame := m.Encode()
		for to := uint32(0); to < n; to++ {
			if to != from {
				net.inflight = append(net.inflight, simMsg{from, to, frame})
			}
		}
	}
	randomCommand := func(h int) Command {
		vm := vms[rng.Intn(len(vms))]
		other := hostName(rng.Intn(n))
		cur, _ := regs[h].Get(vm) // a guess from the host's own, possibly stale, replica
		from := hostName(h)
		if cur.Owner != "" && rng.Intn(4) != 0 {
			from = cur.Owner // acting for the owner it believes in
		}
		if other == from {
			other = hostName((h + 1) % n)
		}
		switch rng.Intn(4) {
		case 0:
			return Command{Op: OpPlan, VMID: vm, From: from, To: other}
		case 1:
			return Command{Op: OpHandover, VMID: vm, From: from, To: other}
		case 2:
			return Command{Op: OpAbort, VMID: vm}
		default:
			e := cur.Epoch
			if rng.Intn(3) == 0 && e > 1 {
				e-- // deliberately stale
			}
			return Command{Op: OpResume, VMID: vm, From: from, Epoch: e}
		}
	}

	steps := 20000
	settled := func() bool {
		for _, r := range reps {
			if r.LastExecuted() != reps[0].LastExecuted() {
				return false
			}
		}
		return !anyPending(hosts)
	}
	for step := 0; step < steps || !settled(); step++ {
		if step > 20*steps {
			t.Fatalf("not settled after %d steps: %d in flight", step, len(net.inflight))
		}
		faulty := step < steps
		if faulty && rng.Intn(1000) == 0 {
			// New partition: cut off the primary some replica follows, a
			// random replica, or none.
			for i := range net.group {
				net.group[i] = 0
			}
			switch rng.Intn(3) {
			case 0:
				net.group[reps[rng.Intn(n)].Primary()] = 1
			case 1:
				net.group[rng.Intn(n)] = 1
			}
		}
		if !faulty {
			for i := range net.group {
				net.group[i] = 0
			}
		}
		switch x := rng.Intn(100); {
		case x >= 6 && len(net.inflight) > 0:
			i := rng.Intn(len(net.inflight))
			msg := net.inflight[i]
			net.inflight[i] = net.inflight[len(net.inflight)-1]
			net.inflight = net.inflight[:len(net.inflight)-1]
			if faulty && (rng.Float64() < lossRate || net.group[msg.from] != net.group[msg.to]) {
				continue
			}
			m, err := pbft.Decode(msg.frame, pbft.DefaultMaxMessageBytes)
			if err != nil {
				t.Fatal(err)
			}
			if m.Type == pbft.MsgReply {
				hst := hosts[msg.to]
				if ts, out, done := hst.client.OnReply(msg.from, m); done && hst.pending != nil && ts == hst.pending.Timestamp {
					res, err := DecodeResult(out)
					if err != nil {
						t.Fatal(err)
					}
					accepted = append(accepted, acceptance{msg.to, ts, res})
					if hst.cmd.Op == OpResume && res.Err == nil {
						hst.resumed = append(hst.resumed, hst.cmd.Epoch)
					}
					hst.pending = nil
				}
				continue
			}
			deliverOutput(msg.to, reps[msg.to].Step(msg.from, m))
		case x < 3:
			i := rng.Intn(n)
			deliverOutput(uint32(i), reps[i].Tick())
			hst := hosts[i]
			if hst.pending != nil {
				hst.age++
				if hst.age%20 == 0 {
					send(hst.id, hst.pending)
				}
			}
		case x < 6:
			h := rng.Intn(n)
			// After the faults stop, keep a trickle of requests: an idle
			// PBFT cluster has no reason to bring a lagging replica back.
			if hosts[h].pending == nil && (step < steps || (!anyPending(hosts) && rng.Intn(20) == 0)) {
				cmd := randomCommand(h)
				b, err := EncodeCommand(cmd)
				if err != nil {
					t.Fatal(err)
				}
				hosts[h].cmd, hosts[h].pending, hosts[h].age = cmd, hosts[h].client.NewRequest(b), 0
				send(uint32(h), hosts[h].pending)
			}
		}
	}

	// Replicas agree on every sequence number they executed.
	type pos struct {
		seq   uint64
		index int
	}
	bySeq := map[pos]pbft.Execution{}
	batchLen := map[uint64]int{}
	for i := range history {
		for _, e := range history[i] {
			k := pos{e.Seq, e.Index}
			if p, ok := bySeq[k]; ok && (!bytes.Equal(p.Result, e.Result) || p.Client != e.Client || p.Timestamp != e.Timestamp) {
				t.Fatalf("replica %d executed seq %d/%d differently", i, e.Seq, e.Index)
			}
			bySeq[k] = e
			batchLen[e.Seq] = max(batchLen[e.Seq], e.Index+1)
		}
	}
	// Replay the longest history through a reference registry and check
	// the invariants at every step.
	ref := NewRegistry()
	ownerAt := map[string]string{} // vm/epoch -> owner
	committed := map[[2]uint64]Result{}
	var maxSeq uint64
	for s := range batchLen {
		maxSeq = max(maxSeq, s)
	}
	complete := true
	for s := uint64(1); s <= maxSeq; s++ {
		if batchLen[s] == 0 {
			complete = false
		}
		for idx := 0; idx < batchLen[s]; idx++ {
			e, ok := bySeq[pos{s, idx}]
			if !ok {
				// Executed only via state transfer everywhere we looked: the
				// replicas' final states are compared below instead.
				complete = false
				continue
			}
			if e.Op == nil {
				continue
			}
			cmd, err := DecodeCommand(e.Op)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := ref.Get(cmd.VMID)
			res := ref.ApplyCommand(cmd)
			got, err := DecodeResult(e.Result)
			if err != nil {
				t.Fatal(err)
			}
			if got.Err != res.Err || got.Epoch != res.Epoch || got.Owner != res.Owner {
				t.Fatalf("seq %d: replica result %+v, reference %+v", s, got, res)
			}
			committed[[2]uint64{uint64(e.Client), e.Timestamp}] = got
			if res.Err == nil {
				key := fmt.Sprintf("%s/%d", cmd.VMID, res.Epoch)
				if o, ok := ownerAt[key]; ok && o != res.Owner {
					t.Fatalf("two owners %s and %s for %s", o, res.Owner, key)
				}
				ownerAt[key] = res.Owner
			}
			switch cmd.Op {
			case OpHandover:
				if res.Err == nil {
					handovers++
					if res.Epoch <= before.Epoch && before.Owner != res.Owner {
						t.Fatalf("handover did not raise the epoch: %d -> %d", before.Epoch, res.Epoch)
					}
				}
			case OpResume:
				if res.Err == nil {
					resumes++
					if cmd.Epoch != before.Epoch || cmd.From != before.Owner {
						t.Fatalf("resume by %s at epoch %d accepted while %s owns at %d", cmd.From, cmd.Epoch, before.Owner, before.Epoch)
					}
				} else if cmd.Epoch < before.Epoch {
					staleRefused++
				}
			}
		}
	}
	// What clients accepted is what was committed.
	for _, a := range accepted {
		if c, ok := committed[[2]uint64{uint64(a.client), a.ts}]; ok && (c.Err != a.res.Err || c.Epoch != a.res.Epoch || c.Owner != a.res.Owner) {
			t.Fatalf("client %d accepted %+v, committed %+v", a.client, a.res, c)
		}
	}
	for i := 1; i < n; i++ {
		if !bytes.Equal(regs[0].Snapshot(), regs[i].Snapshot()) {
			t.Fatalf("replica %d state differs from replica 0", i)
		}
	}
	if complete && !bytes.Equal(regs[0].Snapshot()[9:], ref.Snapshot()[9:]) {
		t.Fatalf("reference registry differs from the replicas")
	}
	views := reps[0].View()
	t.Logf("%d seqs, %d accepted by clients, %d handovers, %d resumes ok, %d stale refused, final view %d",
		maxSeq, len(accepted), handovers, resumes, staleRefused, views)
	return handovers, resumes, staleRefused
}

func anyPending(hs []*simHost) bool {
	for _, h := range hs {
		if h.pending != nil {
			return true
		}
	}
	return false
}
