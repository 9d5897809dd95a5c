package agent

import (
	"os"
	"os/signal"
	"syscall"
)

// exitSignalNames are the names sshd's sig2name knows; any other signal is
// reported as "SIG@openssh.com", exactly as sshd reports it.
var exitSignalNames = map[syscall.Signal]string{
	syscall.SIGABRT: "ABRT", syscall.SIGALRM: "ALRM", syscall.SIGFPE: "FPE",
	syscall.SIGHUP: "HUP", syscall.SIGILL: "ILL", syscall.SIGINT: "INT",
	syscall.SIGKILL: "KILL", syscall.SIGPIPE: "PIPE", syscall.SIGQUIT: "QUIT",
	syscall.SIGSEGV: "SEGV", syscall.SIGTERM: "TERM", syscall.SIGUSR1: "USR1",
	syscall.SIGUSR2: "USR2",
}

func signalName(s syscall.Signal) string {
	if n, ok := exitSignalNames[s]; ok {
		return n
	}
	return "SIG@openssh.com"
}

// requestSignals is the reverse map, for the `signal` stream request.
var requestSignals = func() map[string]syscall.Signal {
	m := map[string]syscall.Signal{}
	for s, n := range exitSignalNames {
		m[n] = s
	}
	return m
}()

// ResetSignals makes sure the agent's children start with default signal
// dispositions. Exec resets caught signals to SIG_DFL but keeps ignored ones
// ignored, and the agent may inherit ignored signals: busybox ash starts a
// background job (`sshvisor-agent &` in rcS) with SIGINT and SIGQUIT
// ignored, `nohup` ignores SIGHUP, and Go's runtime keeps an inherited
// SIG_IGN for SIGHUP, SIGINT and the job-control signals. Catching them here
// (and ignoring the notifications) turns every one into "caught", so a user's
// shell gets Ctrl-C and Ctrl-Z back. SIGPIPE is caught for the same reason
// (the child of `yes | head` must die of it) and so that the agent itself
// survives a vanished peer. The signal mask needs no care: busybox init
// unblocks everything and Go restores the startup mask in the child.
func ResetSignals() {
	c := make(chan os.Signal, 16)
	signal.Notify(c, syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGPIPE,
		syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR1, syscall.SIGUSR2,
		syscall.SIGALRM, syscall.SIGCHLD, syscall.SIGWINCH, syscall.SIGURG)
	go func() {
		for range c {
		}
	}()
}
