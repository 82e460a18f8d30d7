// Package app is the kproxy command: kube-proxy's command line and configuration file
// (package config) turned into a running proxy. Each step is a small function — build
// the client configuration, prepare the node, build the proxier for the mode, start the
// health and metrics servers, register the controllers on a controller-runtime manager
// — so that the wiring reads top to bottom in Run and each piece can be tested alone.
package app
