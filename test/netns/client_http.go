package netns

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// HTTPClient returns an HTTP client whose connections are made from inside the namespace.
// Keep-alives are off, so every request opens a new connection and goes through service
// load balancing afresh; proxies from the environment are ignored. timeout bounds each
// request and, separately, each connect: net/http lets a connect outlive a cancelled
// request, and a connect in flight pins the namespace and an OS thread.
func (n *NS) HTTPClient(timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return n.Dial(ctx, d, network, addr)
			},
		},
	}
}

// GetHTTP fetches http://addr/ from inside the namespace and parses the answer of a
// [NS.ServeHTTP] server. Errors classify like [NS.DialTCP]'s; a status other than 200 is
// Failed.
func (n *NS) GetHTTP(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + addr.String() + "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Reply{}, probeError("http", n, url, err)
	}
	client := n.HTTPClient(timeout)
	defer client.CloseIdleConnections() // also cancels a connect nobody waits for any more
	resp, err := client.Do(req)
	if err != nil {
		return Reply{}, probeError("http", n, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		return Reply{}, probeError("http", n, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Reply{}, probeError("http", n, url, fmt.Errorf("status %s", resp.Status))
	}
	rep, err := ParseReply(string(body))
	if err != nil {
		return Reply{}, probeError("http", n, url, err)
	}
	return rep, nil
}
