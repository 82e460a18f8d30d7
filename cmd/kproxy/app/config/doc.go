// Package config turns kproxy's command line and its KubeProxyConfiguration file into
// one effective configuration, the way kube-proxy does, so that a kube-proxy DaemonSet
// can switch its image to kproxy without touching its arguments or its ConfigMap.
//
// The configuration is the published kubeproxy.config.k8s.io/v1alpha1
// KubeProxyConfiguration type (k8s.io/kube-proxy/config/v1alpha1) with kube-proxy's
// defaults. Precedence matches kube-proxy 1.36:
//
//   - Without --config, every flag (set or defaulted) is the configuration.
//   - With --config, the file is the configuration and configuration flags are ignored,
//     except --hostname-override and the logging flags (-v, --vmodule, ...), which
//     override the file. kube-proxy ignores the other flags silently; kproxy keeps that
//     precedence but logs one warning naming every ignored flag.
//   - --master, --cleanup, --init-only and --write-config-to are not configuration and
//     always apply.
//
// Differences from kube-proxy, all in the direction of failing loudly: unknown or
// duplicate fields in the file are an error (kube-proxy falls back to lenient decoding
// and only logs), and settings kproxy does not implement (feature gates, the nftables
// and Windows modes, JSON logging, ...) are rejected with a message naming the flag or
// field instead of being ignored.
package config
