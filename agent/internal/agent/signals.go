package agent

import (
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// requestSignals are the names the `signal` stream request may carry (the
// doc's list, which is RFC 4254's).
var requestSignals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE,
	"HUP": syscall.SIGHUP, "ILL": syscall.SIGILL, "INT": syscall.SIGINT,
	"KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE, "QUIT": syscall.SIGQUIT,
	"SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

// otherSignalNames name the rest of Linux's signals for EXIT. (sshd would
// say "SIG@openssh.com" for these; the gateway wants a plain name and maps
// what the SSH protocol cannot carry itself.)
var otherSignalNames = map[syscall.Signal]string{
	syscall.SIGBUS: "BUS", syscall.SIGCHLD: "CHLD", syscall.SIGCONT: "CONT",
	syscall.SIGIO: "IO", syscall.SIGPROF: "PROF", syscall.SIGPWR: "PWR",
	syscall.SIGSTKFLT: "STKFLT", syscall.SIGSTOP: "STOP", syscall.SIGSYS: "SYS",
	syscall.SIGTRAP: "TRAP", syscall.SIGTSTP: "TSTP", syscall.SIGTTIN: "TTIN",
	syscall.SIGTTOU: "TTOU", syscall.SIGURG: "URG", syscall.SIGVTALRM: "VTALRM",
	syscall.SIGWINCH: "WINCH", syscall.SIGXCPU: "XCPU", syscall.SIGXFSZ: "XFSZ",
}

// signalName is the name of s without "SIG" (real-time signals are
// "RTMIN+n", as kill -l says).
func signalName(s syscall.Signal) string {
	for n, x := range requestSignals {
		if x == s {
			return n
		}
	}
	if n, ok := otherSignalNames[s]; ok {
		return n
	}
	if s >= 34 && s <= 64 {
		return "RTMIN+" + strconv.Itoa(int(s)-34)
	}
	return "UNKNOWN" + strconv.Itoa(int(s))
}

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
