package netns

import (
	"fmt"
	"net/netip"
	"strings"
)

// Reply is what a test server answered: who it is and what it saw.
type Reply struct {
	// Server is the label of the namespace whose server answered ("local-0").
	Server string
	// ServerIP is the local address the request arrived on, after any DNAT.
	ServerIP netip.Addr
	// ClientIP is the source address the server saw; it differs from the client's own
	// address when the request was masqueraded.
	ClientIP netip.Addr
}

// String formats the reply as its wire line, without the newline.
func (r Reply) String() string {
	return r.Server + " " + r.ServerIP.String() + " " + r.ClientIP.String()
}

// ParseReply parses one reply line, "<label> <server-ip> <client-ip>", as written by the
// servers of this package. Surrounding white space is ignored.
func ParseReply(line string) (Reply, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return Reply{}, fmt.Errorf("netns: malformed reply %q: want \"<label> <server-ip> <client-ip>\"", line)
	}
	srv, err := netip.ParseAddr(f[1])
	if err != nil {
		return Reply{}, fmt.Errorf("netns: malformed reply %q: server address: %w", line, err)
	}
	cli, err := netip.ParseAddr(f[2])
	if err != nil {
		return Reply{}, fmt.Errorf("netns: malformed reply %q: client address: %w", line, err)
	}
	return Reply{Server: f[0], ServerIP: srv, ClientIP: cli}, nil
}

// replyLine is the line a server sends for one request.
func replyLine(label string, local, remote netip.Addr) []byte {
	return []byte(label + " " + local.Unmap().String() + " " + remote.Unmap().String() + "\n")
}
