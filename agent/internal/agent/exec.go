package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"sshvisor/agent/internal/pty"
	"sshvisor/agent/protocol"
)

// ptyDrainMax bounds how long output is read from a pty after its child
// exited. Like sshd, the agent reads the master until the slave side is gone
// (EIO: every process holding the terminal has closed it, and the kernel has
// handed over what they wrote); an idle master proves nothing, since the
// kernel moves a pty's output to the master from a worker thread that a
// loaded guest may run late. Unlike sshd, a background job that keeps the
// terminal open cannot hold the session open for longer than this.
const ptyDrainMax = 2 * time.Second

// execStream is a process started for an exec OPEN, with a pty or pipes.
type execStream struct {
	s    *stream
	cmd  *exec.Cmd
	auth *authSocket

	master                *os.File // with a pty
	stdin, stdout, stderr *os.File // without: our ends of the pipes

	mu       sync.Mutex
	reaped   bool
	reapedAt time.Time
	eow      bool
	hungUp   bool
}

func startExec(s *stream, o *protocol.Open) {
	e := &execStream{s: s}
	if err := e.start(o); err != nil {
		e.release()
		s.fail(oneLine(err))
		return
	}
	s.setHandler(e)
	s.sendJSON(protocol.TypeOpenOK, map[string]int{"pid": e.cmd.Process.Pid})
	in := e.stdin
	if e.master != nil {
		in = e.master
	}
	go e.feedStdin(in)
	if e.master != nil {
		done := make(chan struct{})
		go func() { e.pumpPty(); close(done) }()
		go e.waitPty(done)
		return
	}
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { pump(s, e.stdout, protocol.TypeData); pumps.Done() }()
	go func() { pump(s, e.stderr, protocol.TypeStderr); pumps.Done() }()
	var ends sync.WaitGroup
	ends.Add(2)
	go func() { pumps.Wait(); s.send(protocol.TypeEOF, nil); ends.Done() }()
	go func() { s.sendJSON(protocol.TypeExit, e.wait()); ends.Done() }()
	go func() { ends.Wait(); s.close() }()
}

// start builds and starts the child; on error the caller releases what was
// made.
func (e *execStream) start(o *protocol.Open) error {
	var extra [][2]string
	var childFiles []*os.File
	defer func() {
		for _, f := range childFiles {
			f.Close() // the child has its copies
		}
	}()
	if o.Pty != nil {
		m, sl, err := pty.Open()
		if err != nil {
			return err
		}
		e.master = m
		childFiles = append(childFiles, sl, sl, sl)
		// sshd ignores a failure to apply modes or size; so do we.
		_ = pty.ApplyModes(sl, o.Pty.Modes)
		_ = pty.SetSize(m, o.Pty.Cols, o.Pty.Rows, o.Pty.Width, o.Pty.Height)
		extra = append(extra, [2]string{"TERM", o.Pty.Term}, [2]string{"SSH_TTY", sl.Name()})
	} else {
		for i := 0; i < 3; i++ {
			r, w, err := os.Pipe()
			if err != nil {
				return err
			}
			if i == 0 {
				e.stdin = w
				childFiles = append(childFiles, r)
			} else {
				childFiles = append(childFiles, w)
				if i == 1 {
					e.stdout = r
				} else {
					e.stderr = r
				}
			}
		}
	}
	root, err := sessionRoot()
	if err != nil {
		return err
	}
	if o.AgentForward {
		a, err := newAuthSocket(e.s, root)
		if err != nil {
			return err
		}
		e.auth = a
		extra = append(extra, [2]string{"SSH_AUTH_SOCK", a.path})
	}
	c, err := buildCommand(o, root, extra)
	if err != nil {
		return err
	}
	e.cmd = &exec.Cmd{Path: c.path, Args: c.args, Env: c.env, Dir: c.dir,
		Stdin: childFiles[0], Stdout: childFiles[1], Stderr: childFiles[2],
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Chroot: c.chroot}}
	if e.master != nil {
		e.cmd.SysProcAttr.Setctty = true
		e.cmd.SysProcAttr.Ctty = 0 // the child's stdin is the slave
	}
	if err := e.cmd.Start(); err != nil {
		return err
	}
	if e.auth != nil {
		go e.auth.serve()
	}
	return nil
}

// feedStdin writes the gateway's DATA to the child and grants the window
// back as the child takes it. EOF closes a pipe; with a pty nothing is done
// (no ^D is synthesised, as with sshd).
func (e *execStream) feedStdin(w *os.File) {
	broken := false
	for {
		b, eof, ok := e.s.nextInput()
		if !ok {
			return
		}
		if eof {
			if e.master == nil {
				w.Close()
			}
			return
		}
		if !broken {
			if _, err := w.Write(b); err != nil {
				broken = true // the child closed stdin: keep granting, drop bytes
			}
		}
		e.s.consumed(len(b))
	}
}

// wait reaps the child (only ours: os/exec waits for its pid) and describes
// how it ended.
func (e *execStream) wait() protocol.Exit {
	err := e.cmd.Wait()
	e.mu.Lock()
	e.reaped, e.reapedAt = true, time.Now()
	e.mu.Unlock()
	if e.cmd.ProcessState == nil {
		return protocol.Exit{Code: 255}
	}
	if ws, ok := e.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return protocol.Exit{Signal: signalName(ws.Signal()), Core: ws.CoreDump()}
	}
	_ = err // an *exec.ExitError; ProcessState says it all
	return protocol.Exit{Code: e.cmd.ProcessState.ExitCode()}
}

// request handles window-change, signal, break and eow.
func (e *execStream) request(r protocol.StreamRequest) {
	switch r.Op {
	case "window-change":
		if e.master != nil {
			_ = pty.SetSize(e.master, r.Cols, r.Rows, r.Width, r.Height)
		}
	case "signal":
		sig, ok := requestSignals[r.Name]
		e.mu.Lock()
		if ok && !e.reaped {
			_ = syscall.Kill(e.cmd.Process.Pid, sig)
		}
		e.mu.Unlock()
	case "break":
		if e.master != nil {
			go pty.SendBreak(e.master) // TCSBRK takes a quarter second
		}
	case "eow":
		e.mu.Lock()
		e.eow = true
		e.mu.Unlock()
		if e.master != nil {
			e.master.SetReadDeadline(time.Now())
		} else {
			e.stdout.Close() // the writer gets SIGPIPE / EPIPE
		}
	}
}

// hangup closes the pty master (the kernel sends the session SIGHUP) or the
// pipes, and removes the agent socket. The child is still reaped by wait.
func (e *execStream) hangup() {
	e.mu.Lock()
	if e.hungUp {
		e.mu.Unlock()
		return
	}
	e.hungUp = true
	e.mu.Unlock()
	e.release()
}

func (e *execStream) release() {
	for _, f := range []*os.File{e.master, e.stdin, e.stdout, e.stderr} {
		if f != nil {
			f.Close()
		}
	}
	if e.auth != nil {
		e.auth.close()
	}
}

// oneLine makes an error fit OPEN_FAIL's one line.
func oneLine(err error) string {
	s := err.Error()
	var pe *os.PathError
	if errors.As(err, &pe) {
		s = fmt.Sprintf("%s: %v", pe.Path, pe.Err)
	}
	return strings.ReplaceAll(s, "\n", " ")
}
