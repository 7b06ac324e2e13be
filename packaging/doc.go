// Package packaging has no code of its own: its tests check what an
// operator installs. Untagged, in make unit: CHANGELOG.md is a Keep a
// Changelog file naming every option and metric, and the Kubernetes example
// runs the image make image tags. With -tags release, in make release-test
// (part of make test): make image builds an image whose exported filesystem
// runs the sidecar as its user, and make dist writes exactly its artifacts,
// their sums verifying.
package packaging
