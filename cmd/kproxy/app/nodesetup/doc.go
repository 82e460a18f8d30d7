// Package nodesetup applies the node settings kube-proxy makes before it programs any
// rule: conntrack table size and timeouts, net.ipv4.conf.all.route_localnet for
// localhost NodePorts, and the process's oom_score_adj.
//
// Each setting is written only when it differs from the current value. A setting whose
// file is missing or read-only (a container with /proc/sys mounted read-only, a network
// namespace where nf_conntrack_max belongs to the host) is skipped with a log line
// instead of failing, so kproxy runs wherever its rules can run.
package nodesetup
