package iptables

// perfReadBackEvery sets Options.FullReadBackEvery (kept apart so the benchmarks
// also build against trees without the option, for A/B runs).
func perfReadBackEvery(o *Options, n int) { o.FullReadBackEvery = n }
