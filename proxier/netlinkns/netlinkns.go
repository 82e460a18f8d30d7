// Package netlinkns opens netlink handles inside a network namespace, named the way
// kproxy's options name one: a name as `ip netns add` creates it (under /var/run/netns)
// or an absolute path such as /proc/<pid>/ns/net. Backends take such a name so that
// tests, the demo and the VM can drive a namespace standing in for a node.
package netlinkns

import (
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Open returns a handle for the given netlink protocols (e.g. unix.NETLINK_NETFILTER)
// in the namespace spec names, or in the caller's namespace when spec is empty. The
// handle's sockets keep the namespace alive until the handle is closed.
func Open(spec string, protocols ...int) (*netlink.Handle, error) {
	ns, err := Get(spec)
	if err != nil {
		return nil, err
	}
	if spec != "" {
		defer ns.Close()
	}
	h, err := netlink.NewHandleAt(ns, protocols...)
	if err != nil {
		return nil, fmt.Errorf("opening a netlink socket in network namespace %q: %w", spec, err)
	}
	return h, nil
}

// Get resolves spec to a namespace handle the caller must close; an empty spec is
// netns.None(), meaning the caller's namespace, which needs no closing.
func Get(spec string) (netns.NsHandle, error) {
	if spec == "" {
		return netns.None(), nil
	}
	var (
		ns  netns.NsHandle
		err error
	)
	if strings.HasPrefix(spec, "/") {
		ns, err = netns.GetFromPath(spec)
	} else {
		ns, err = netns.GetFromName(spec)
	}
	if err != nil {
		return netns.None(), fmt.Errorf("opening network namespace %q: %w", spec, err)
	}
	return ns, nil
}
