// Package shrink gives back the room of maps that peaked. A Go map keeps
// the room of the most it ever held: the sidecar's lists of what is not
// served hold every router at a start (Traefik has loaded nothing yet, the
// plugin has not reported), then a handful, for as long as it runs.
package shrink

// Map returns m, or a copy of m at its size once it holds under a quarter
// of *peak. peak is the most m held since it was last copied; Map keeps it.
func Map[K comparable, V any](m map[K]V, peak *int) map[K]V {
	n := len(m)
	if n > *peak {
		*peak = n
	}
	if n >= *peak/4 || *peak < 64 {
		return m
	}
	out := make(map[K]V, n)
	for k, v := range m {
		out[k] = v
	}
	*peak = n
	return out
}
