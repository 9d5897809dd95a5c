package agent

import (
	"encoding/json"
	"fmt"

	"sshvisor/agent/internal/sysops"
	"sshvisor/agent/protocol"
)

// Indirections so tests can run the agent without touching the host's
// clock, hostname or RNG.
var (
	bootID   = sysops.BootID
	uptimeMs = sysops.UptimeMs
	// SystemOps performs the privileged parts of set-clock and identity.
	SystemOps = struct {
		SetClock      func(int64) error
		SetHostname   func(string) error
		AddEntropy    func([]byte) error
		WriteIdentity func(string) error
		Sync          func()
	}{sysops.SetClock, sysops.SetHostname, sysops.AddEntropy, sysops.WriteIdentity, sysops.Sync}
)

// request answers one control REQUEST; each runs on its own goroutine, so a
// slow sync does not hold up a ping (answers may come out of order).
func (a *Agent) request(gen uint64, r protocol.Request) {
	result, err := a.perform(r)
	resp := map[string]any{}
	for k, v := range result {
		resp[k] = v
	}
	resp["id"] = r.ID
	if err != nil {
		resp["ok"] = false
		resp["error"] = err.Error()
	} else {
		resp["ok"] = true
	}
	a.out.push(gen, protocol.Encode(protocol.TypeResponse, 0, mustJSON(resp)))
}

func (a *Agent) perform(r protocol.Request) (map[string]any, error) {
	switch r.Op {
	case "ping":
		return nil, nil
	case "sync":
		SystemOps.Sync()
		return nil, nil
	case "set-clock":
		if r.UnixMs == nil {
			return nil, fmt.Errorf("set-clock needs unixMs")
		}
		return nil, SystemOps.SetClock(*r.UnixMs)
	case "identity":
		return nil, a.identity(r)
	case "info":
		return map[string]any{
			"hostname": sysops.Hostname(), "bootId": bootID(), "uptimeMs": uptimeMs(),
			"streams": a.StreamCount(),
		}, nil
	}
	return nil, fmt.Errorf("unknown op %s", r.Op)
}

// identity gives a clone of a template its own name, clock and randomness,
// then writes the file the template's init waits for (last, so that init
// goes on only once all of it is done).
func (a *Agent) identity(r protocol.Request) error {
	if err := SystemOps.SetHostname(r.Hostname); err != nil {
		return err
	}
	if r.UnixMs != nil {
		if err := SystemOps.SetClock(*r.UnixMs); err != nil {
			return err
		}
	}
	if err := SystemOps.AddEntropy(r.Seed); err != nil {
		return err
	}
	return SystemOps.WriteIdentity(r.Hostname)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are marshalled
	}
	return b
}
