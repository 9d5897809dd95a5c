package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// sessionRootFile names the directory sessions run in, when the VM boots a
// root filesystem image: the guest's init mounts the VM's disk there and
// writes its path into this file (docs/guest-protocol.md, "Session root").
// Without it, sessions run in the agent's own root (the default image).
var sessionRootFile = "/run/sshvisor/session-root"

// guestToolsDir is where, inside a session root, the default image's own
// scp, rsync and sftp-server are reachable (its init bind-mounts the
// initramfs there): the fallbacks for an image that ships none of them.
const guestToolsDir = "/run/sshvisor/guest/usr/lib/sshvisor/bin"

// sessionRoot is the directory sessions are chrooted into, or "" for none.
// Read at every session start: init writes it once the disk is mounted, and
// a session never starts before the guest said it is ready. A file that
// names no directory (init writes "unmounted" when the image's filesystem
// could not be mounted) is an error: a session must never land in the
// initramfs when the user's image was meant.
func sessionRoot() (string, error) {
	b, err := os.ReadFile(sessionRootFile)
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %v", sessionRootFile, err)
	}
	root := strings.TrimSpace(string(b))
	if st, err := os.Stat(root); !filepath.IsAbs(root) || root == "/" || err != nil || !st.IsDir() {
		return "", fmt.Errorf("the VM's root filesystem image is not mounted (its serial console says why)")
	}
	return root, nil
}

// inRoot is the host-side path of p (absolute, as seen in the session root).
func inRoot(root, p string) string {
	if root == "" {
		return p
	}
	return filepath.Join(root, p)
}

// resolveInRoot follows symlinks of p inside root (absolute links are
// relative to root), at most 16 of them, and reports whether it names a
// regular file or a directory as wanted. An image's /bin/bash is often a
// link, and /bin itself one to usr/bin.
func existsInRoot(root, p string, dir bool) bool {
	if root == "" {
		st, err := os.Stat(p)
		return err == nil && st.IsDir() == dir && (dir || st.Mode().IsRegular())
	}
	cur := "/"
	rest := strings.Split(strings.Trim(filepath.Clean(p), "/"), "/")
	links := 0
	for len(rest) > 0 {
		part := rest[0]
		rest = rest[1:]
		if part == "" || part == "." {
			continue
		}
		if part == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, part)
		st, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return false
		}
		if st.Mode()&os.ModeSymlink != 0 {
			if links++; links > 16 {
				return false
			}
			target, err := os.Readlink(filepath.Join(root, next))
			if err != nil {
				return false
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			rest = append(strings.Split(strings.Trim(target, "/"), "/"), rest...)
			continue
		}
		cur = next
	}
	st, err := os.Stat(filepath.Join(root, cur))
	return err == nil && st.IsDir() == dir && (dir || st.Mode().IsRegular())
}
