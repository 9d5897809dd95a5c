/**
 * Guest shell snippets the end-to-end tests run inside a VM to see what is
 * left there.
 */

/** How many processes the guest agent has as children: one per live session (the one running this counts). */
export const AGENT_CHILDREN = 'a=$(pidof sshvisor-agent); ps -o pid,ppid | awk -v a="$a" \'$2 == a\' | wc -l';
