package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

// soakConfig is the size of a soak run.
type soakConfig struct {
	viewers, rooms int
	duration       time.Duration
	churnEvery     time.Duration // a tenth of the viewers leave and are replaced this often
	msgEvery       time.Duration // each room's producer sends a chat this often
	rssFactor      float64       // RSS at the end may be at most start*rssFactor + rssSlack
	rssSlack       int64
	// A viewer the room cuts (no close frame: PongWait or WriteWait) is the
	// harness falling behind, not a fault, if its messages had come to it
	// lagLimit or more late by the room's clock; it is replaced, as a real
	// client would reconnect. At most maxBehind of all connections may.
	lagLimit  time.Duration
	maxBehind float64
}

// soakFromEnv reads CHATFLEET_SOAK: unset, the short run of `make test`;
// a duration (make soak: 10m), the full one.
func soakFromEnv(t *testing.T) soakConfig {
	v := os.Getenv("CHATFLEET_SOAK")
	if v == "" {
		// Race-instrumented binaries: the race runtime's shadow memory
		// grows with every new allocation site and never shrinks, hence the
		// wider memory tolerance.
		return soakConfig{viewers: 500, rooms: 5, duration: 20 * time.Second, churnEvery: 5 * time.Second,
			msgEvery: 100 * time.Millisecond, rssFactor: 1.5, rssSlack: 32 << 20, lagLimit: 3 * time.Second, maxBehind: 0.02}
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Minute {
		t.Fatalf("CHATFLEET_SOAK=%q: want a duration of at least 1m, like 10m", v)
	}
	return soakConfig{viewers: 10_000, rooms: 20, duration: d, churnEvery: time.Minute,
		msgEvery: time.Second, rssFactor: 1.2, rssSlack: 16 << 20, lagLimit: time.Second, maxBehind: 0.02}
}

// raiseNoFile lifts RLIMIT_NOFILE's soft limit to the hard one (20,000
// here); the chatserver and its rooms inherit it.
func raiseNoFile(t *testing.T) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Fatal(err)
		}
	}
	return rl.Cur
}

// ipBindAddressNoPort (IP_BIND_ADDRESS_NO_PORT) lets connect choose the
// source port per 4-tuple instead of bind choosing it per address.
const ipBindAddressNoPort = 24

// spreadDialer spreads client sockets over the source addresses
// 127.0.0.2 … 127.0.0.(1+n), so that thousands of connections and their
// TIME_WAITs never exhaust one address's ephemeral ports. It dials loopback
// only.
func spreadDialer(n int) *websocket.Dialer {
	var dialers []*net.Dialer
	for i := range n {
		dialers = append(dialers, &net.Dialer{
			Timeout:   15 * time.Second,
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))},
			Control: func(_, _ string, c syscall.RawConn) error {
				return c.Control(func(fd uintptr) {
					syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
				})
			},
		})
	}
	var next atomic.Uint64
	return &websocket.Dialer{
		HandshakeTimeout: 20 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  512,
		WriteBufferPool:  &sync.Pool{},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return nil, fmt.Errorf("the soak dials loopback only, not %s", addr)
			}
			return dialers[next.Add(1)%uint64(len(dialers))].DialContext(ctx, network, addr)
		},
	}
}

// soakViewer is one viewer connection of the soak.
type soakViewer struct {
	user string
	room int
	tl   *tally
}

// soakRoom is one room of the soak with its producer.
type soakRoom struct {
	name    string
	port    int
	pid     int
	prod    *tally
	sent    atomic.Int64
	lastAck atomic.Int64 // seq of the producer's last acknowledged chat
}

// TestSoak runs many viewers over many rooms of one host for a long time
// while a tenth of them leave and are replaced at every churn step, and
// each room's producer chats: no viewer that keeps up may miss a sequenced
// message (no gap, and everyone reaches the last one), the room never drops
// one, and the room processes and the master end with the file
// descriptors, threads and memory they had after warm-up (within the
// stated tolerances). Short by default; CHATFLEET_SOAK=10m (make soak) runs
// 10,000 viewers over 20 rooms for 10 minutes.
func TestSoak(t *testing.T) {
	t.Parallel()
	cfg := soakFromEnv(t)
	nofile := raiseNoFile(t)
	if need := uint64(cfg.viewers + 500); nofile < need {
		t.Fatalf("RLIMIT_NOFILE %d, the soak needs %d", nofile, need)
	}
	h := startHost(t, "LOG_LEVEL=warn", "STATS_EVERY=1s", fmt.Sprintf("MAX_CONNS=%d", cfg.viewers*2))
	iss, err := token.NewIssuer(secret)
	if err != nil {
		t.Fatal(err)
	}
	dialer := spreadDialer(40)
	dial := func(room *soakRoom, user string, role chatfleet.Role) (*tally, error) {
		tok, err := iss.Issue(room.name, "", user, user, role, 2*time.Hour)
		if err != nil {
			return nil, err
		}
		c, _, err := dialer.Dial(fmt.Sprintf("ws://127.0.0.1:%d/ws?token=%s", room.port, url.QueryEscape(tok)), nil)
		if err != nil {
			return nil, fmt.Errorf("dial %s as %s: %w", room.name, user, err)
		}
		tl := follow(c, 3*time.Minute)
		deadline := time.Now().Add(30 * time.Second)
		for {
			tl.mu.Lock()
			ok := tl.welcomed
			tl.mu.Unlock()
			if ok {
				return tl, nil
			}
			select {
			case <-tl.done:
				return nil, fmt.Errorf("%s: ended before its welcome: %v", user, tl.end)
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				c.Close()
				return nil, fmt.Errorf("%s: no welcome in 30s", user)
			}
		}
	}

	rooms := make([]*soakRoom, cfg.rooms)
	for i := range rooms {
		r := &soakRoom{name: fmt.Sprintf("soak-%02d", i)}
		r.port = h.create(r.name)
		r.pid = h.room(r.name).PID
		if r.prod, err = dial(r, r.name+"-producer", chatfleet.RoleProducer); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.prod.c.Close() })
		r.prod.mu.Lock()
		r.prod.onText = func(b []byte) {
			if typ, seq := head(b); typ == protocol.TypeAck && seq > 0 {
				r.lastAck.Store(seq)
			}
		}
		r.prod.mu.Unlock()
		rooms[i] = r
	}

	// The viewers, connected by a bounded pool of dialers.
	var (
		mu      sync.Mutex
		viewers []*soakViewer
		nextID  int
	)
	newUser := func() string {
		mu.Lock()
		defer mu.Unlock()
		nextID++
		return fmt.Sprintf("v%06d", nextID)
	}
	connect := func(n int, roomOf func(i int) int) error {
		jobs := make(chan int)
		errc := make(chan error, n)
		var wg sync.WaitGroup
		for range min(n, 48) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					room := roomOf(i)
					user := newUser()
					tl, err := dial(rooms[room], user, chatfleet.RoleViewer)
					if err != nil {
						errc <- err
						continue
					}
					mu.Lock()
					viewers = append(viewers, &soakViewer{user: user, room: room, tl: tl})
					mu.Unlock()
				}
			}()
		}
		for i := range n {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		close(errc)
		return <-errc
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, v := range viewers {
			v.tl.c.Close()
		}
	})
	// ended describes the viewers whose connection ended without the test
	// closing it.
	ended := func() string {
		mu.Lock()
		defer mu.Unlock()
		n, desc := 0, ""
		for _, v := range viewers {
			select {
			case <-v.tl.done:
			default:
				continue
			}
			n++
			if n <= 3 {
				v.tl.mu.Lock()
				desc += fmt.Sprintf("; %s of %s ended %v after its last frame (%v ago), messages up to %v late: %v", v.user, rooms[v.room].name,
					v.tl.endAt.Sub(v.tl.lastAt).Round(time.Millisecond), time.Since(v.tl.endAt).Round(time.Second), v.tl.maxLag.Round(time.Millisecond), v.tl.end)
				v.tl.mu.Unlock()
			}
		}
		for _, r := range rooms {
			if code := r.prod.closeCode(); code != 0 {
				desc += fmt.Sprintf("; producer of %s ended: %v", r.name, r.prod.end)
			}
		}
		return fmt.Sprintf("%d viewers ended%s", n, desc)
	}
	expectConns := func() error {
		rs, err := h.rooms()
		if err != nil {
			return err
		}
		want := cfg.viewers/cfg.rooms + 1
		for _, r := range rs {
			if r.Stats.Conns != want {
				return fmt.Errorf("room %s reports %d connections, want %d; %s", r.Name, r.Stats.Conns, want, ended())
			}
		}
		return nil
	}
	// cutByRoom reports whether v's connection ended without the test
	// closing it; if so it checks that v lost nothing before and counts it
	// as fallen behind, or fails the test if v was keeping up.
	var behind atomic.Int64
	cutByRoom := func(v *soakViewer) bool {
		select {
		case <-v.tl.done:
		default:
			return false
		}
		if v.tl.ourClose.Load() {
			return false
		}
		v.tl.mu.Lock()
		defer v.tl.mu.Unlock()
		if v.tl.gaps > 0 {
			t.Errorf("viewer %s of %s lost messages: %s", v.user, rooms[v.room].name, v.tl.gapAt)
		}
		if v.tl.maxLag < cfg.lagLimit {
			t.Errorf("viewer %s of %s was cut while keeping up (messages at most %v late): %v", v.user, rooms[v.room].name, v.tl.maxLag, v.tl.end)
		}
		behind.Add(1)
		return true
	}
	// heal replaces the viewers the room cut, in the same rooms.
	heal := func() {
		mu.Lock()
		var cut []*soakViewer
		kept := viewers[:0]
		for _, v := range viewers {
			if cutByRoom(v) {
				cut = append(cut, v)
			} else {
				kept = append(kept, v)
			}
		}
		viewers = kept
		mu.Unlock()
		if len(cut) > 0 {
			t.Logf("%d viewers fell behind and were cut by the room (%s); replacing them", len(cut), describe(cut))
			if err := connect(len(cut), func(i int) int { return cut[i].room }); err != nil {
				t.Errorf("replacing cut viewers: %v", err)
			}
		}
	}
	settle := func() error {
		heal()
		return expectConns()
	}
	start := time.Now()
	if err := connect(cfg.viewers, func(i int) int { return i % cfg.rooms }); err != nil {
		t.Fatalf("connecting the viewers: %v", err)
	}
	t.Logf("%d viewers over %d rooms connected in %v (RLIMIT_NOFILE %d)", cfg.viewers, cfg.rooms, time.Since(start).Round(time.Millisecond), nofile)
	testutil.Eventually(t, 60*time.Second, settle)

	// The producers chat until the end.
	ctx, stopChat := context.WithCancel(context.Background())
	var chatWG sync.WaitGroup
	for i, r := range rooms {
		chatWG.Add(1)
		go func() {
			defer chatWG.Done()
			tick := time.NewTicker(cfg.msgEvery)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				r.prod.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				msg := fmt.Appendf(nil, `{"type":"chat","text":"room %d message %d","clientId":"m%d"}`, i, n, n)
				if err := r.prod.c.WriteMessage(websocket.TextMessage, msg); err != nil {
					t.Errorf("producer of %s: %v", r.name, err)
					return
				}
				r.sent.Add(1)
			}
		}()
	}
	defer stopChat()

	// Churn: every step, a tenth of the viewers close (each checked for
	// gaps first) and as many new ones connect, to the same rooms.
	var churned, lostBeforeChurn atomic.Int64
	churn := func() {
		mu.Lock()
		rand.Shuffle(len(viewers), func(i, j int) { viewers[i], viewers[j] = viewers[j], viewers[i] })
		n := len(viewers) / 10
		out := append([]*soakViewer(nil), viewers[:n]...)
		viewers = viewers[n:]
		mu.Unlock()
		for _, v := range out {
			if cutByRoom(v) {
				continue // replaced below all the same
			}
			v.tl.ourClose.Store(true)
			if _, _, _, gaps := v.tl.state(); gaps > 0 {
				lostBeforeChurn.Add(1)
				t.Errorf("viewer %s before churn: %d gaps (%s)", v.user, gaps, v.tl.gapAt)
			}
			v.tl.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "churn"), time.Now().Add(time.Second))
			v.tl.c.Close()
		}
		if err := connect(n, func(i int) int { return out[i].room }); err != nil {
			t.Errorf("churn reconnect: %v", err)
		}
		churned.Add(int64(n))
	}
	sample := func() map[int]procStat {
		m := map[int]procStat{}
		for _, pid := range append([]int{h.Proc.Cmd.Process.Pid}, pidsOf(rooms)...) {
			s, err := readProc(pid)
			if err != nil {
				t.Fatalf("read /proc/%d: %v", pid, err)
			}
			m[pid] = s
		}
		return m
	}

	steps := int(cfg.duration / cfg.churnEvery)
	var base map[int]procStat
	for step := 1; step <= steps; step++ {
		time.Sleep(cfg.churnEvery)
		churn()
		testutil.Eventually(t, 60*time.Second, settle)
		if step == 1 { // warm-up: every code path has run once
			time.Sleep(time.Second)
			base = sample()
		}
		mu.Lock()
		t.Logf("step %d/%d: %d churned so far, %d viewers", step, steps, churned.Load(), len(viewers))
		mu.Unlock()
	}
	stopChat()
	chatWG.Wait()

	// Every room's last chat reaches every viewer, without a gap.
	var sent int64
	for _, r := range rooms {
		sent += r.sent.Load()
		testutil.Eventually(t, 30*time.Second, func() error {
			if r.lastAck.Load() == 0 || r.prod.reached(r.lastAck.Load()) != nil {
				return fmt.Errorf("room %s: last ack %d not seen by its producer", r.name, r.lastAck.Load())
			}
			return nil
		})
	}
	mu.Lock()
	final := append([]*soakViewer(nil), viewers...)
	mu.Unlock()
	var chats, seqs int64
	var maxLag time.Duration
	checked := 0
	for _, v := range final {
		want := rooms[v.room].lastAck.Load()
		cut := false
		testutil.Eventually(t, 60*time.Second, func() error {
			if cutByRoom(v) {
				cut = true
				return nil
			}
			if err := v.tl.reached(want); err != nil {
				return fmt.Errorf("viewer %s of %s: %w", v.user, rooms[v.room].name, err)
			}
			return nil
		})
		if cut {
			continue
		}
		checked++
		_, s, c, _ := v.tl.state()
		seqs += int64(s)
		chats += int64(c)
		v.tl.mu.Lock()
		maxLag = max(maxLag, v.tl.maxLag)
		v.tl.mu.Unlock()
	}
	var drops int64
	rs, err := h.rooms()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		drops += r.Stats.SlowDrops
	}
	if drops != 0 {
		t.Errorf("the rooms dropped %d slow viewers", drops)
	}

	// Resources: after the last churn and its reconnects, the same number
	// of connections as after warm-up; the processes must hold no more.
	testutil.Eventually(t, 60*time.Second, settle)
	var end map[int]procStat
	testutil.Eventually(t, 30*time.Second, func() error {
		end = sample()
		for pid, b := range base {
			e := end[pid]
			switch {
			case e.FDs > b.FDs+4:
				return fmt.Errorf("pid %d: %d file descriptors, %d after warm-up", pid, e.FDs, b.FDs)
			case e.Threads > b.Threads+max(4, b.Threads/5):
				return fmt.Errorf("pid %d: %d threads, %d after warm-up", pid, e.Threads, b.Threads)
			case float64(e.RSS) > float64(b.RSS)*cfg.rssFactor+float64(cfg.rssSlack):
				return fmt.Errorf("pid %d: RSS %d MiB, %d MiB after warm-up", pid, e.RSS>>20, b.RSS>>20)
			}
		}
		return nil
	})
	var bFD, eFD, bTh, eTh int
	var bRSS, eRSS int64
	for pid, b := range base {
		e := end[pid]
		bFD, eFD, bTh, eTh, bRSS, eRSS = bFD+b.FDs, eFD+e.FDs, bTh+b.Threads, eTh+e.Threads, bRSS+b.RSS, eRSS+e.RSS
	}
	t.Logf("soak %v: %d viewers, %d rooms, %d connections churned, %d chats sent, %d chats and %d sequenced messages checked at the %d final viewers (max lag %v), 0 gaps, %d slow drops, %d viewers fell behind and were cut",
		cfg.duration, cfg.viewers, cfg.rooms, churned.Load(), sent, chats, seqs, checked, maxLag.Round(time.Millisecond), drops, behind.Load())
	if total := float64(cfg.viewers) + float64(churned.Load()); float64(behind.Load()) > cfg.maxBehind*total {
		t.Errorf("%d of %.0f viewer connections fell behind: the machine is too loaded for this soak to say anything", behind.Load(), total)
	}
	t.Logf("master+rooms after warm-up -> end: fds %d -> %d, threads %d -> %d, RSS %d -> %d MiB",
		bFD, eFD, bTh, eTh, bRSS>>20, eRSS>>20)
	h.noPanic()
	if lostBeforeChurn.Load() > 0 {
		t.Errorf("%d churned viewers had lost messages or were closed", lostBeforeChurn.Load())
	}
}

// describe sums up how cut viewers ended.
func describe(cut []*soakViewer) string {
	var lag time.Duration
	ends := map[string]int{}
	for _, v := range cut {
		v.tl.mu.Lock()
		lag = max(lag, v.tl.maxLag)
		ends[fmt.Sprint(v.tl.end)]++
		v.tl.mu.Unlock()
	}
	return fmt.Sprintf("messages up to %v late; ends: %v", lag.Round(time.Millisecond), ends)
}

func pidsOf(rooms []*soakRoom) []int {
	var pids []int
	for _, r := range rooms {
		pids = append(pids, r.pid)
	}
	return pids
}
