// Package readme holds the test that keeps the README's code honest: every ```go block
// in README.md must compile against the current API.
package readme
