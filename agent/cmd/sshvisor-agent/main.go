// Command sshvisor-agent is the guest agent of sshvisor: it serves the
// protocol of docs/guest-protocol.md on the virtio-serial port named
// org.sshvisor.agent.0 (or on a given device, or on stdin/stdout).
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"

	"sshvisor/agent/internal/agent"
	"sshvisor/agent/internal/device"
)

// version is reported in HELLO_ACK; the build may override it with -X.
var version = "1.0.0"

type stdio struct {
	io.Reader
	io.Writer
}

func main() {
	devPath := flag.String("device", "", "serve on this device instead of the virtio port "+device.PortName)
	useStdio := flag.Bool("stdio", false, "serve on stdin and stdout (for tests)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("sshvisor-agent", version)
		return
	}
	// The guest console is the log: a line at start, then only trouble.
	logger := log.New(os.Stderr, "sshvisor-agent: ", 0)
	agent.ResetSignals()
	a := agent.New(version, logger)

	if *useStdio {
		logger.Printf("%s on stdin/stdout", version)
		if err := a.Serve(stdio{os.Stdin, os.Stdout}, true); err != nil {
			logger.Fatal(err)
		}
		return
	}
	path := *devPath
	if path == "" {
		path = device.Find("/sys/class/virtio-ports", device.PortName)
		if path == "" {
			logger.Printf("%s waiting for virtio port %s", version, device.PortName)
			path = device.Wait(device.PortName)
		}
	}
	port, err := device.Open(path)
	if err != nil {
		logger.Fatal(err)
	}
	logger.Printf("%s serving on %s", version, path)
	logger.Fatal(a.Serve(port, false))
}
