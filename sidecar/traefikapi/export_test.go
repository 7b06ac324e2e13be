package traefikapi

import "context"

// List is a sweep's reading of every page of path, with their digest.
func List(ctx context.Context, c *Client, path string) (pages [][]byte, digest []byte, err error) {
	return c.list(ctx, path)
}
