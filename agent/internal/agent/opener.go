package agent

import "sshvisor/agent/protocol"

// Streams the agent opens itself (tcp-accepted, auth-agent) count against
// the gateway's limit of 256 from OPEN until they are over or refused; the
// agent never opens a 257th, and accept loops stop accepting meanwhile so
// further connections wait in the kernel's listen backlog.

// waitSlot blocks while the agent has as many streams of its own open as
// the gateway accepts (or as many streams as it accepts itself), so that
// further connections wait in the listen backlog. It returns false once the
// connection gen is over or alive() says the opener is gone. Callers hold a.mu.
func (a *Agent) waitSlotLocked(gen uint64, alive func() bool) bool {
	for gen == a.gen && alive() && (len(a.streams) >= MaxStreams || a.agentOpened >= MaxAgentOpened) {
		a.slots.Wait()
	}
	return gen == a.gen && alive()
}

// waitSlot is waitSlotLocked for accept loops, before they accept.
func (a *Agent) waitSlot(gen uint64, alive func() bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.waitSlotLocked(gen, alive)
}

// openAgentStream opens a stream from the agent's side (tcp-accepted,
// auth-agent) and waits for the gateway's answer; nil means refused, or the
// connection or the opener (alive) is gone.
func (a *Agent) openAgentStream(gen uint64, alive func() bool, o protocol.Open) *stream {
	a.mu.Lock()
	if !a.waitSlotLocked(gen, alive) {
		a.mu.Unlock()
		return nil
	}
	for a.streams[a.nextID] != nil || a.nextID < protocol.FirstAgentStream {
		a.nextID++
	}
	s := a.newStream(a.nextID, gen)
	a.nextID++
	s.pending = true
	s.openRes = make(chan bool, 1)
	a.streams[s.id] = s
	a.agentOpened++
	a.mu.Unlock()
	a.out.push(gen, protocol.Encode(protocol.TypeOpen, s.id, mustJSON(o)))
	if !<-s.openRes {
		a.remove(s)
		s.kill()
		return nil
	}
	return s
}

// wakeSlots lets waiters re-check alive() (an opener was hung up).
func (a *Agent) wakeSlots() {
	a.mu.Lock()
	a.slots.Broadcast()
	a.mu.Unlock()
}
