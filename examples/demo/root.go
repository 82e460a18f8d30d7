package main

import (
	"io"
	"os"

	discovery "k8s.io/api/discovery/v1"
)

type discoveryEndpoint = discovery.Endpoint

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
