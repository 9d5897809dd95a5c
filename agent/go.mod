module sshvisor/agent

go 1.19
